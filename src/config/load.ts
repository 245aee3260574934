import { readFile, stat } from "node:fs/promises";
import { isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Node } from "yaml";
import { InputError } from "../input-error.js";
import { configSchema, type ConfigFile } from "./schema.js";

/** A config of thousands of tables fits; a runaway file is refused before it is read. */
export const MAX_CONFIG_BYTES = 4 * 1048576;

/**
 * Aliases a config may expand (`*name` references to `&name` anchors): a
 * few are handy, and a chain of them (a "billion laughs" file) would
 * otherwise take all memory.
 */
const MAX_ALIAS_COUNT = 100;

/**
 * Reads and validates a config file. Every problem is reported as
 * `file:line: key.path: what is wrong`, so a user can go straight to it.
 */
export async function loadConfig(
  path: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ConfigFile> {
  let text: string;
  try {
    const { size } = await stat(path);
    if (size > MAX_CONFIG_BYTES) {
      throw new InputError(
        `config ${path} is ${(size / 1048576).toFixed(1)} MB: the limit is ${MAX_CONFIG_BYTES / 1048576} MB (use include: patterns for many tables)`,
      );
    }
    text = await readFile(path, "utf8");
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(
      `cannot read config ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  return parseConfig(text, path, env);
}

export function parseConfig(
  text: string,
  path: string,
  env: NodeJS.ProcessEnv = process.env,
): ConfigFile {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    // linePos is only filled in with prettyErrors; work it out from the offset.
    const line = e.pos[0] >= 0 ? lineCounter.linePos(e.pos[0]).line : undefined;
    throw new InputError(
      `${path}${line ? `:${line}` : ""}: invalid YAML: ${e.message.split("\n")[0]}`,
    );
  }
  const nodeAt = (keyPath: (string | number)[]): Node | undefined =>
    (keyPath.length === 0 ? doc.contents : doc.getIn(keyPath, true)) as Node | undefined;
  // The line of the node at keyPath or, when it is missing, of its nearest parent.
  const lineOf = (keyPath: (string | number)[]): string => {
    for (let n = keyPath.length; n >= 0; n--) {
      const offset = nodeAt(keyPath.slice(0, n))?.range?.[0];
      if (offset !== undefined) return `:${lineCounter.linePos(offset).line}`;
    }
    return "";
  };

  const missing: { path: (string | number)[]; name: string }[] = [];
  interpolate(doc.contents as Node | null, [], env, missing);
  if (missing.length > 0) {
    const m = missing[0]!;
    throw new InputError(
      `${path}${lineOf(m.path)}: ${m.path.join(".")}: environment variable ${m.name} is not set`,
    );
  }

  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    let line = "";
    visit(doc, {
      Alias(_key, node) {
        if (node.range) line = `:${lineCounter.linePos(node.range[0]).line}`;
        return visit.BREAK;
      },
    });
    throw new InputError(
      `${path}${line}: YAML aliases expand to too much (more than ${MAX_ALIAS_COUNT} per anchor): ${(err as Error).message}`,
      { cause: err },
    );
  }
  const result = configSchema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const keyPath = issue.path.filter((p): p is string | number => typeof p !== "symbol");
    // An unknown key has no node of its own at issue.path; point at its parent's key.
    const where = issue.code === "unrecognized_keys" ? [...keyPath, issue.keys[0]!] : keyPath;
    const name = where.length > 0 ? where.join(".") : "(top level)";
    const line = lineOf(where) || lineOf(keyPath);
    const message =
      issue.code === "unrecognized_keys"
        ? "unknown key"
        : issue.code === "invalid_type" && where.length > 0 && !doc.hasIn(where)
          ? "required key is missing"
          : issue.message;
    throw new InputError(`${path}${line}: ${name}: ${message}`);
  }
  return result.data;
}

/** Replaces `${NAME}` in string values with the environment's value, in place. */
function interpolate(
  node: Node | null,
  path: (string | number)[],
  env: NodeJS.ProcessEnv,
  missing: { path: (string | number)[]; name: string }[],
): void {
  if (!node) return;
  if (isScalar(node)) {
    if (typeof node.value === "string" && node.value.includes("${")) {
      node.value = node.value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
        const v = env[name];
        if (v === undefined) {
          missing.push({ path, name });
          return "";
        }
        return v;
      });
    }
  } else if (isMap(node)) {
    for (const item of node.items) {
      const key = isScalar(item.key) ? String(item.key.value) : String(item.key);
      interpolate(item.value as Node | null, [...path, key], env, missing);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => interpolate(item as Node | null, [...path, i], env, missing));
  }
}
