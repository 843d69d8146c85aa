/**
 * config-file - read levee.yaml (or the embedded defaults) into a validated
 * Config and a compiled Ruleset. Errors come back as `file:line:col: path:
 * message` lines, like `postfix check`; nothing here exits or logs.
 */

import { readFile } from 'node:fs/promises';
import {
  compileRules,
  DEFAULT_CONFIG_YAML,
  formatConfigIssue,
  loadConfig,
  parseRecipientDirectory,
  type LeveeConfig,
  type BatvKey,
  type RecipientDirectory,
  type Ruleset,
} from '@levee/rules';

export const EMBEDDED_DEFAULTS = '<embedded defaults>';

export type LoadedConfig =
  | {
      readonly ok: true;
      readonly source: string;
      readonly config: LeveeConfig;
      readonly ruleset: Ruleset;
      /** `file:line:col: path: warning: ...` lines: valid, but probably wrong. */
      readonly warnings: readonly string[];
      /** From recipients.file, when configured. */
      readonly directory: RecipientDirectory | undefined;
      /** The BATV key from batv.secret_file, when configured. */
      readonly batvKey: BatvKey | undefined;
      /** The key from log.redact_key_file, when configured. */
      readonly redactKey: string | undefined;
    }
  | { readonly ok: false; readonly source: string; readonly errors: readonly string[] };

/** loadConfigText - validate and compile YAML text that came from `source`. */
export function loadConfigText(text: string, source: string): LoadedConfig {
  const loaded = loadConfig(text, source);
  if (!loaded.ok) return { ok: false, source, errors: loaded.issues.map(formatConfigIssue) };
  return {
    ok: true,
    source,
    config: loaded.config,
    ruleset: compileRules(loaded.config),
    warnings: loaded.warnings.map(formatConfigIssue),
    directory: undefined,
    batvKey: undefined,
    redactKey: undefined,
  };
}

/** A secret of at least 16 characters from `file` (named `setting` in the config), or the error line. */
async function readSecret(file: string, setting: string, what: string): Promise<{ ok: true; secret: string } | { ok: false; error: string }> {
  let secret: string;
  try {
    secret = (await readFile(file, 'utf8')).trim();
  } catch (error) {
    return { ok: false, error: `${file}: cannot read (${setting}): ${(error as Error).message}` };
  }
  return secret.length < 16 ? { ok: false, error: `${file}: ${what} must be at least 16 characters` } : { ok: true, secret };
}

/** withFiles - read the files a loaded config names (redaction key, BATV secret, recipients); their errors fail the whole load. */
export async function withFiles(loaded: LoadedConfig): Promise<LoadedConfig> {
  const keyFile = loaded.ok ? loaded.config.log.redactKeyFile : undefined;
  if (!loaded.ok || keyFile === undefined) return withBatv(loaded);
  const key = await readSecret(keyFile, 'log.redact_key_file', 'the redaction key');
  if (!key.ok) return { ok: false, source: loaded.source, errors: [key.error] };
  return withBatv({ ...loaded, redactKey: key.secret });
}

/** withBatv - read the BATV secret a loaded config names. */
async function withBatv(loaded: LoadedConfig): Promise<LoadedConfig> {
  const batv = loaded.ok ? loaded.config.batv : undefined;
  if (!loaded.ok || batv === undefined) return withDirectory(loaded);
  const secret = await readSecret(batv.secretFile, 'batv.secret_file', 'the BATV secret');
  if (!secret.ok) return { ok: false, source: loaded.source, errors: [secret.error] };
  return withDirectory({ ...loaded, batvKey: { id: batv.keyId, secret: secret.secret } });
}

/** withDirectory - read the recipients file a loaded config names; its errors fail the whole load. */
async function withDirectory(loaded: LoadedConfig): Promise<LoadedConfig> {
  if (!loaded.ok || loaded.config.recipients.file === undefined) return loaded;
  const file = loaded.config.recipients.file;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    return { ok: false, source: loaded.source, errors: [`${file}: cannot read (recipients.file): ${(error as Error).message}`] };
  }
  const parsed = parseRecipientDirectory(text);
  if (!parsed.ok) return { ok: false, source: loaded.source, errors: parsed.issues.map((i) => `${file}:${i.line}:1: ${i.message}`) };
  return { ...loaded, directory: parsed.directory };
}

/** readConfigFile - the file at `path`, or the embedded defaults when `path` is undefined. */
export async function readConfigFile(path: string | undefined): Promise<LoadedConfig> {
  if (path === undefined) return withFiles(loadConfigText(DEFAULT_CONFIG_YAML, EMBEDDED_DEFAULTS));
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    return { ok: false, source: path, errors: [`${path}: cannot read: ${(error as Error).message}`] };
  }
  return withFiles(loadConfigText(text, path));
}
