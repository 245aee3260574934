/** What a check found: whether a run can go ahead, and what stops it. */
export interface Finding {
  level: "ok" | "warning" | "error";
  /** The server it concerns. */
  server: "source" | "target";
  /** The table it concerns (the source's name on the source, the target's on the target), if one. */
  table?: string;
  /** Which of the run's tables, by position, when it concerns one. */
  index?: number;
  message: string;
  /** For a table a sync refuses: its result's error, when not `server: message`. */
  result?: string;
}

export const ok = (server: Finding["server"], message: string, at?: At): Finding => ({
  level: "ok",
  server,
  ...at,
  message,
});
export const warning = (server: Finding["server"], message: string, at?: At): Finding => ({
  level: "warning",
  server,
  ...at,
  message,
});
export const error = (server: Finding["server"], message: string, at?: At): Finding => ({
  level: "error",
  server,
  ...at,
  message,
});

/** The table a finding is about: its name on that server and its place in the run. */
export interface At {
  table: string;
  index: number;
}

const LABEL = { ok: "ok   ", warning: "warn ", error: "ERROR" } as const;

/** One line: level, server, table, what. */
export function formatFinding(f: Finding): string {
  return `${LABEL[f.level]} ${f.server}${f.table ? ` ${f.table}` : ""}: ${f.message}`;
}
