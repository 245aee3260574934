const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86400 } as const;

/** `90s`, `15m`, `2h`, `1d` in seconds; null when the text is not such a duration. */
export function parseDuration(text: string): number | null {
  const m = /^(\d+)([smhd])$/.exec(text.trim());
  return m ? Number(m[1]) * UNIT_SECONDS[m[2] as keyof typeof UNIT_SECONDS] : null;
}
