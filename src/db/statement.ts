/**
 * A statement and its bound values kept together, so no `$3` is numbered far
 * from its value. The shape of pg's QueryConfig: `client.query(stmt)` runs it.
 */
export interface Statement {
  text: string;
  values: unknown[];
}

export function statement(text: string, values: unknown[] = []): Statement {
  return { text, values };
}
