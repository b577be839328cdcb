import { createHash } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import type { SecretsLog } from './log.js'
import { parseSecretsFile } from './secrets-file.js'
import type { SecretData } from '../providers/types.js'
import { type SecretSource, type SecretSourceHealth, type SecretValue } from './types.js'
import { SecretError } from '../errors.js'

export interface FileSecretSourceDeps {
  /** JSON object { "<secret path>": { field: value } }. */
  file: string
  log: SecretsLog
  /** The checked-in example file is in use (no SECRETS_FILE): said loudly at start. */
  usingExample?: boolean
}

interface Entry {
  data: SecretData
  version: number
  /** sha256 of the entry, so a change is detected without keeping a second copy of the secret. */
  digest: string
}

function digestOf (data: SecretData): string {
  const sorted = Object.keys(data).sort().map(key => [key, data[key]])
  return createHash('sha256').update(JSON.stringify(sorted)).digest('hex')
}

/**
 * Embedded-mode secret source: a local JSON file, re-read when its mtime, size or inode changes
 * (a stat per call, the file only when it changed). A path's version starts at 1 and goes up each
 * time its entry changes, so the rotation check works as it does with Vault. Errors name the file,
 * the path and field names, never a value (JSON parse messages quote the text, so they are dropped).
 */
export function createFileSecretSource (deps: FileSecretSourceDeps): SecretSource {
  const { file, log } = deps
  const entries = new Map<string, Entry>()
  /** Last version per path, kept after a path disappears so that re-adding it still bumps the version. */
  const lastVersions = new Map<string, number>()
  let loadedStamp: string | undefined
  let loadFailure: SecretError | undefined
  let inflight: Promise<void> | undefined
  let closed = false

  async function loadIfChanged (): Promise<void> {
    let stamp: string
    try {
      const info = await stat(file)
      stamp = `${info.ino}:${info.size}:${info.mtimeMs}`
    } catch (err) {
      throw new SecretError('unavailable', `cannot read the secrets file ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
    }
    if (stamp === loadedStamp) return
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch (err) {
      throw new SecretError('unavailable', `cannot read the secrets file ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
    }
    const parsed = parseSecretsFile(text, `the secrets file ${file}`)
    if ('problems' in parsed) throw new SecretError('invalid', parsed.problems.slice(0, 3).join('; '))
    const seen = new Set<string>()
    for (const [path, fields] of Object.entries(parsed.entries)) {
      seen.add(path)
      const data = Object.freeze({ ...fields })
      const digest = digestOf(data)
      const previous = entries.get(path)
      if (previous?.digest === digest) continue
      const version = (lastVersions.get(path) ?? 0) + 1
      lastVersions.set(path, version)
      entries.set(path, { data, version, digest })
    }
    for (const path of [...entries.keys()]) if (!seen.has(path)) entries.delete(path)
    loadedStamp = stamp
  }

  /** One load at a time; records the outcome for health(). */
  async function refresh (): Promise<void> {
    if (closed) throw new SecretError('unavailable', 'the file secret source is closed')
    inflight ??= (async () => {
      try {
        await loadIfChanged()
        if (loadFailure !== undefined) log.info({ file }, 'secrets file readable again')
        loadFailure = undefined
      } catch (err) {
        const error = err instanceof SecretError ? err : new SecretError('unavailable', `cannot load the secrets file ${file}`)
        if (loadFailure?.message !== error.message) log.warn({ file, err: error }, 'secrets file unusable')
        loadFailure = error
        throw error
      } finally {
        inflight = undefined
      }
    })()
    await inflight
  }

  function entry (path: string): Entry {
    const found = entries.get(path)
    if (found === undefined) throw new SecretError('not_found', `no secret "${path}" in the secrets file ${file}`)
    return found
  }

  return {
    kind: 'file',

    async start () {
      await refresh()
      log.warn({ file, secrets: entries.size, example: deps.usingExample === true },
        'secrets come from a local file (embedded mode); not for production')
    },

    async read (path): Promise<SecretValue> {
      await refresh()
      const found = entry(path)
      return { data: found.data, version: found.version }
    },

    async latestVersion (path) {
      await refresh()
      return entry(path).version
    },

    health (): SecretSourceHealth {
      if (closed) return { state: 'down', detail: 'closed' }
      if (loadFailure !== undefined) return { state: 'degraded', detail: loadFailure.message }
      return { state: 'ok' }
    },

    async close () {
      closed = true
    }
  }
}
