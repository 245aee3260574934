import assert from "node:assert/strict";
import type { CliResult } from "./cli.js";

export const STACK = /\n\s+at .+:\d+/;

/** An error as the CLI contract has it: this exit code, one line on stderr, no stack; the line. */
export function assertOneLineError(r: CliResult, code: number, pattern: RegExp): string {
  assert.equal(r.code, code, `exit code; stderr: ${r.stderr}`);
  const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
  assert.equal(lines.length, 1, `one line on stderr, got: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, STACK, "no stack trace without --debug");
  assert.match(lines[0]!, /^xmin-sync: /);
  assert.match(lines[0]!, pattern);
  return lines[0]!;
}
