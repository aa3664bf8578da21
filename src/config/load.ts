import { open } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ConfigError } from './errors.ts';
import { findJsonSyntaxError } from './json-position.ts';
import { parseClusterConfig } from './parse.ts';
import type { ClusterFileConfig } from './types.ts';

/** A cluster config is a page of JSON; anything near this size is a wrong file. */
export const CONFIG_FILE_BYTES_MAX = 1024 * 1024;

/** Reads, parses and validates a cluster config file. Every failure is a ConfigError naming the file. */
export async function loadClusterConfig(path: string): Promise<ClusterFileConfig> {
  const absolutePath = resolve(path);
  const json = parseJsonText(await readConfigText(absolutePath), absolutePath);
  try {
    return parseClusterConfig(json, dirname(absolutePath));
  } catch (error) {
    throw error instanceof ConfigError ? error.withSource(absolutePath) : error;
  }
}

async function readConfigText(path: string): Promise<string> {
  try {
    const file = await open(path, 'r');
    try {
      const { size } = await file.stat();
      if (size > CONFIG_FILE_BYTES_MAX) {
        throw new ConfigError([`${path}: ${size} bytes, more than ${CONFIG_FILE_BYTES_MAX}`], path);
      }
      return await file.readFile('utf8');
    } finally {
      await file.close();
    }
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError([`${path}: cannot read: ${(error as Error).message}`], path);
  }
}

/** Editors on Windows may save a byte order mark, which JSON.parse refuses. */
const BYTE_ORDER_MARK = '\uFEFF';

function parseJsonText(text: string, path: string): unknown {
  const body = text.startsWith(BYTE_ORDER_MARK) ? text.slice(1) : text;
  try {
    return JSON.parse(body);
  } catch (error) {
    throw new ConfigError([jsonProblem(body, path, (error as Error).message)], path);
  }
}

/** `file:line:column: …`, the form editors and terminals turn into a link. */
function jsonProblem(text: string, path: string, parserMessage: string): string {
  const found = findJsonSyntaxError(text);
  if (found === undefined) return `${path}: invalid JSON: ${parserMessage}`;
  return `${path}:${found.line}:${found.column}: invalid JSON: ${found.reason} (offset ${found.offset})`;
}
