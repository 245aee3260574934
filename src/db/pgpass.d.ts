// pgpass (a dependency of pg, and ours) ships no types. Its helper is used
// directly because its entry point reads only $PGPASSFILE, not libpq's
// passfile keyword.
declare module "pgpass/lib/helper.js" {
  import type { Stats } from "node:fs";
  import type { Readable } from "node:stream";

  interface PgPassConnInfo {
    host: string;
    port: number;
    database: string;
    user: string;
  }
  const helper: {
    /** False (with a warning on stderr, as libpq) for a file others can read. */
    usePgPass(stats: Stats, fname?: string): boolean;
    getPassword(
      connInfo: PgPassConnInfo,
      stream: Readable,
      cb: (password: string | undefined) => void,
    ): void;
  };
  export default helper;
}
