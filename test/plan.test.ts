import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { SourceTable } from "../src/source/catalog.js";
import { parseSnapshot } from "../src/source/snapshot.js";
import { isMassDelete, sourceConfirmsDelete } from "../src/sync/apply.js";
import { planTable, type PlanInput } from "../src/sync/plan.js";
import type { TableState } from "../src/target/state.js";

/** The plan is a plain value computed from what is known before a row moves: tested as such. */
const leaf = (oid: string, relfilenode: string) => ({
  name: { schema: "app", name: `t_${oid}` },
  oid,
  relkind: "r",
  relfilenode,
  bytes: 8192,
  pages: 1,
  estimatedRows: 10,
  canSelect: true,
});
const table = (leaves = [leaf("100", "100")]): SourceTable => ({
  name: { schema: "app", name: "t" },
  oid: "99",
  relkind: "p",
  columns: [],
  uniqueIndexes: [
    { name: "t_pkey", primary: true, columns: ["id"], shown: ["id"], unusable: null },
  ],
  userTypes: [],
  collations: [],
  leaves,
  bytes: 8192,
  estimatedRows: 10,
});
const identity = { systemIdentifier: "1", timeline: 1, databaseOid: "5" };
const state = (over: Partial<TableState> = {}): TableState => ({
  sourceSchema: "app",
  sourceTable: "t",
  sourceSystemId: "1",
  sourceTimeline: 1,
  sourceDatabaseOid: "5",
  sourceTableOid: "99",
  mode: "xmin",
  watermark: 900n,
  cursorValue: null,
  snapshot: "900:900:",
  runs: 1,
  lastRunAt: new Date(),
  lastDeleteCheckAt: null,
  runsSinceDeleteCheck: 0,
  leaves: [{ oid: "100", relfilenode: "100" }],
  columns: null,
  contentUntil: null,
  types: null,
  resyncReason: null,
  ...over,
});
const input = (over: Partial<PlanInput> = {}): PlanInput => ({
  spec: { source: { schema: "app", name: "t" } },
  forceFull: false,
  source: table(),
  identity,
  snapshot: parseSnapshot("1000:1000:"),
  state: state(),
  target: { exists: true, empty: false, softDeleteColumn: false },
  sourceHasRows: true,
  keyEnforced: true,
  now: new Date(),
  ...over,
});

describe("planTable", () => {
  test("an unchanged table is read incrementally from the watermark, committing the snapshot's xmin", () => {
    const p = planTable(input());
    assert.equal(p.mode, "xmin");
    assert.deepEqual(p.filter, { kind: "xmin", since: 900n });
    assert.equal(p.watermark, 1000n);
    assert.equal(p.deletes, "none");
    assert.equal(p.compareContent, false);
  });

  test("a first run loads a new table; a stored watermark over an emptied target resyncs by staging", () => {
    const first = planTable(
      input({ state: null, target: { exists: false, empty: true, softDeleteColumn: false } }),
    );
    assert.deepEqual([first.mode, first.into, first.reason], ["full", "new-table", "first run"]);
    const emptied = planTable(
      input({ target: { exists: true, empty: true, softDeleteColumn: false } }),
    );
    assert.deepEqual(
      [emptied.mode, emptied.into, emptied.deletes],
      ["full", "staging", "against-staged"],
    );
  });

  test("an empty target nobody synced is filled in place only under a key the source enforces", () => {
    const empty = { exists: true, empty: true, softDeleteColumn: false };
    assert.equal(planTable(input({ state: null, target: empty })).into, "empty-table");
    const given = planTable(input({ state: null, target: empty, keyEnforced: false }));
    assert.equal(
      given.into,
      "staging",
      "staged first, so duplicate keys are refused before a part commits",
    );
  });

  test("a leaf new since the last run is read whole, in an incremental run", () => {
    const p = planTable(input({ source: table([leaf("100", "100"), leaf("101", "101")]) }));
    assert.equal(p.mode, "xmin");
    assert.deepEqual([...p.newLeaves], ["101"]);
    assert.match(p.reason!, /1 partition\(s\) or child table\(s\) added/);
  });

  test("new storage (TRUNCATE, rewrite) compares content and reconciles deletes when they are tracked", () => {
    const source = table([leaf("100", "555")]);
    const tracked = planTable(
      input({ source, spec: { source: source.name, deletes: "hard", deleteCheckEvery: 100 } }),
    );
    assert.equal(tracked.deletes, "against-keys", "even when the delete check is not due");
    assert.equal(tracked.compareContent, true);
    assert.match(tracked.reason!, /storage of app\.t_100 replaced/);
    const ignored = planTable(input({ source }));
    assert.equal(ignored.deletes, "none");
    assert.match(ignored.notes.join(), /deletes are not tracked/);
  });

  test("after a rewrite, rows re-read before the watermark passes it are compared by content", () => {
    const rewrite = planTable(input({ source: table([leaf("100", "555")]) }));
    assert.equal(
      rewrite.contentUntil,
      1000n,
      "the rewrite's rows are all below the snapshot's xmax",
    );
    const heldBack = planTable(
      input({
        state: state({ watermark: 950n, contentUntil: 1000n }),
        snapshot: parseSnapshot("960:1005:960"),
      }),
    );
    assert.equal(heldBack.compareContent, true);
    assert.equal(heldBack.contentUntil, 1000n, "still ahead of the new watermark");
    const passed = planTable(input({ state: state({ watermark: 1000n, contentUntil: 1000n }) }));
    assert.equal(passed.compareContent, false);
    assert.equal(passed.contentUntil, null);
  });

  test("a detached leaf forces the delete check", () => {
    const p = planTable(
      input({
        state: state({
          leaves: [
            { oid: "100", relfilenode: "100" },
            { oid: "7", relfilenode: "7" },
          ],
        }),
        spec: { source: { schema: "app", name: "t" }, deletes: "soft", deleteCheckEvery: "1d" },
        now: new Date(),
      }),
    );
    assert.equal(p.deletes, "against-keys");
    assert.equal(p.softDeletes, true);
  });

  test("a state from before leaves were stored changes nothing", () => {
    const p = planTable(input({ state: state({ leaves: null }) }));
    assert.equal(p.newLeaves.size, 0);
    assert.equal(p.reason, undefined);
  });
});

describe("the mass-delete guard", () => {
  test("more than the share of the target's rows is a mass delete", () => {
    assert.equal(isMassDelete(501, 1000, 0.5), true);
    assert.equal(isMassDelete(500, 1000, 0.5), false);
    assert.equal(isMassDelete(0, 0, 0.5), false);
    assert.equal(isMassDelete(3, 0, 0.5), true, "a stale estimate never hides one");
  });
  test("the source confirms it only when it holds about what the copy keeps", () => {
    const confirms = (deleted: number, before: number, fresh: number, inserted = 0) =>
      sourceConfirmsDelete({ deleted, inserted, before, fresh });
    assert.equal(confirms(1000, 1000, 0), true, "the source is empty");
    assert.equal(confirms(900, 1000, 130), true, "a few rows written since");
    assert.equal(confirms(1000, 1000, 1000), false, "a table read as empty");
    assert.equal(confirms(900, 1000, 900), false);
    // Most rows replaced by new ones in one run: the copy keeps the new ones.
    assert.equal(confirms(750, 1000, 1250, 1000), true, "rows deleted and others inserted");
  });
});
