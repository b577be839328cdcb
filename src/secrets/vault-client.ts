import { Agent as HttpAgent } from 'node:http'
import { Agent as HttpsAgent } from 'node:https'
import createNodeVault from 'node-vault'
import type { SecretsLog } from './log.js'
import { z } from 'zod'
import type { SecretData } from '../providers/types.js'
import { SecretError } from '../errors.js'

/**
 * A SecretError raised by a Vault call. It carries only a sanitized summary of the failure: the HTTP
 * status, a network error code, and whether Vault said it is sealed. node-vault's own errors (axios
 * errors) are never attached: their `config.headers`, `request._header` and `response.config` hold the
 * X-Vault-Token header. `name` stays "SecretError" so the log serializer treats it as ours.
 */
export class VaultRequestError extends SecretError {
  /** HTTP status Vault answered with, when it answered. */
  readonly status: number | undefined
  /** Network error code (ECONNREFUSED, ETIMEDOUT...), when Vault did not answer. */
  readonly code: string | undefined
  /** Vault answered 503 "Vault is sealed". */
  readonly sealed: boolean
  constructor (reason: SecretError['kind'], message: string, summary: { status?: number | undefined, code?: string | undefined, sealed?: boolean } = {}) {
    super(reason, message)
    this.status = summary.status
    this.code = summary.code
    this.sealed = summary.sealed ?? false
  }
}

/** What KV v2 metadata says of a secret's versions. */
export interface KvMetadata {
  currentVersion: number
  versions: ReadonlyMap<number, { createdAt: number, readable: boolean }>
}

/** One version of a KV v2 secret. */
export interface KvSecretVersion {
  data: SecretData
  version: number
}

/** The parts of `auth/token/lookup-self` the broker uses. TTLs in seconds; 0 means "never expires". */
export interface VaultTokenInfo {
  ttlSeconds: number
  renewable: boolean
  expireTime: string | null
  creationTtlSeconds: number
  explicitMaxTtlSeconds: number
}

/** The `auth` block of a login or renew-self answer. */
export interface VaultAuthGrant {
  clientToken: string
  leaseDurationSeconds: number
  renewable: boolean
}

/** `sys/health`, reduced to what readiness needs. */
export interface VaultServerHealth {
  initialized: boolean
  sealed: boolean
  standby: boolean
}

/** A thin typed client over node-vault. Every answer is validated; every failure is a VaultRequestError. */
export interface VaultClient {
  /** The token sent as X-Vault-Token; undefined sends none (logins). */
  setToken: (token: string | undefined) => void
  hasToken: () => boolean
  /** GET <mount>/data/<path>[?version=n] */
  readKv: (mount: string, path: string, version?: number) => Promise<KvSecretVersion>
  /** GET <mount>/metadata/<path>: the current version number. */
  readKvVersion: (mount: string, path: string) => Promise<number>
  /** GET <mount>/metadata/<path>: the current version and, per version, when it was created and whether it can still be read. */
  readKvMetadata: (mount: string, path: string) => Promise<KvMetadata>
  /** GET auth/token/lookup-self */
  lookupSelf: () => Promise<VaultTokenInfo>
  /** POST auth/token/renew-self { increment } */
  renewSelf: (incrementSeconds?: number) => Promise<VaultAuthGrant>
  /**
   * POST auth/<mount>/login with the method's body ({ role_id, secret_id } or { role, jwt }). The body
   * values are scrubbed from any error text. A 400 here means Vault refused the credentials: `denied`.
   */
  login: (mount: string, body: Readonly<Record<string, string>>) => Promise<VaultAuthGrant>
  /** GET sys/health (no token needed). */
  health: () => Promise<VaultServerHealth>
  /** Drops pooled connections, including a request that is still hanging. */
  close: () => void
}

export interface VaultClientDeps {
  /** Vault address, e.g. https://vault.internal:8200 (no trailing slash needed). */
  addr: string
  namespace?: string | undefined
  /** Bound on every call, connection included. */
  timeoutMs: number
  /**
   * PEM certificates of the CAs trusted for Vault's TLS (VAULT_CACERT / VAULT_CAPATH). When given they
   * replace the system CAs for Vault connections, as they do for the Vault CLI.
   */
  ca?: readonly string[] | undefined
  log: SecretsLog
}

// Reply schemas: only the fields we use are required; Vault adds fields between versions.
const SecretFieldValue = z.union([z.string(), z.number(), z.boolean()]).transform(value => String(value))
const KvReadReply = z.object({
  data: z.object({
    // Vault answers data: null for a soft-deleted or destroyed version.
    data: z.record(z.string(), SecretFieldValue).nullable(),
    metadata: z.object({ version: z.number().int().positive() })
  })
})
const KvMetadataReply = z.object({
  data: z.object({
    current_version: z.number().int().nonnegative(),
    // Absent on the Vault versions we know only if the secret has none; each is { created_time, deletion_time, destroyed }.
    versions: z.record(z.string(), z.object({
      created_time: z.string(),
      deletion_time: z.string().optional().default(''),
      destroyed: z.boolean().optional().default(false)
    })).optional().default({})
  })
})
const LookupSelfReply = z.object({
  data: z.object({
    ttl: z.number().int().nonnegative(),
    renewable: z.boolean().optional().default(false),
    expire_time: z.string().nullable().optional().default(null),
    creation_ttl: z.number().int().nonnegative().optional().default(0),
    explicit_max_ttl: z.number().int().nonnegative().optional().default(0)
  })
})
const AuthReply = z.object({
  auth: z.object({
    client_token: z.string().min(1),
    lease_duration: z.number().int().nonnegative(),
    renewable: z.boolean()
  })
})
const HealthReply = z.object({ initialized: z.boolean(), sealed: z.boolean(), standby: z.boolean() })

const networkCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE',
  'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN', 'ERR_SOCKET_CONNECTION_TIMEOUT', 'ERR_NETWORK', 'ERR_BAD_RESPONSE'])

/**
 * Vault's error strings ("permission denied", "invalid role or secret ID") carry no secrets, but an
 * error string is foreign text: we cap it and scrub anything token-shaped or equal to a value we sent.
 */
function scrubVaultErrors (errors: unknown, sensitive: readonly string[]): string {
  if (!Array.isArray(errors)) return ''
  let text = errors.filter((entry): entry is string => typeof entry === 'string').slice(0, 3).join('; ')
  for (const value of sensitive) {
    if (value.length >= 4) text = text.split(value).join('***')
  }
  return text
    .replace(/\b(hvs|hvb|hvr|s|b|r)\.[A-Za-z0-9_-]{16,}/g, '***')
    .replace(/\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]*)?/g, '***')
    .replace(/[A-Za-z0-9+/_-]{40,}={0,2}/g, '***')
    .slice(0, 200)
}

function reasonForStatus (status: number): SecretError['kind'] {
  if (status === 404) return 'not_found'
  if (status === 401 || status === 403) return 'denied'
  if (status === 412 || status === 429 || status >= 500) return 'unavailable'
  // 472/473 are DR / performance standby codes: the node cannot serve us right now.
  if (status === 472 || status === 473 || status === 474) return 'unavailable'
  return 'invalid'
}

interface Operation {
  /** e.g. "GET secret/data/providers/kivra"; paths are not secret, values are. */
  readonly label: string
  /** Values that must never appear in an error message (login material). */
  readonly sensitive?: readonly string[]
  /** How to read a 400 answer (logins: the credentials were refused). */
  readonly badRequestReason?: SecretError['kind']
  /** Send no X-Vault-Token: logins (the token may be the expired one being replaced) and sys/health. */
  readonly anonymous?: boolean
}

/** Maps anything node-vault or axios threw into a VaultRequestError, keeping none of the original object. */
function toVaultError (err: unknown, op: Operation, token: string | undefined): VaultRequestError {
  if (err instanceof VaultRequestError) return err
  const record = (typeof err === 'object' && err !== null ? err : {}) as Record<string, unknown>
  // node-vault's ApiResponseError: { message, response: { statusCode, body } }.
  const response = record.response as { statusCode?: unknown, body?: unknown } | undefined
  if (response !== undefined && typeof response.statusCode === 'number') {
    const status = response.statusCode
    const body = (typeof response.body === 'object' && response.body !== null ? response.body : {}) as { errors?: unknown }
    const sensitive = [...(op.sensitive ?? []), ...(token === undefined ? [] : [token])]
    const vaultSays = scrubVaultErrors(body.errors, sensitive)
    const sealed = status === 503 && /sealed/i.test(vaultSays)
    const reason = status === 400 && op.badRequestReason !== undefined ? op.badRequestReason : reasonForStatus(status)
    const detail = vaultSays === '' ? '' : `: ${vaultSays}`
    return new VaultRequestError(reason, `Vault ${op.label} answered ${status}${detail}`, { status, sealed })
  }
  const rawCode = record.code
  const code = typeof rawCode === 'string' && /^[A-Z0-9_]{2,40}$/.test(rawCode) ? rawCode : undefined
  if (code !== undefined && networkCodes.has(code)) {
    const what = code === 'ECONNABORTED' || code === 'ETIMEDOUT' ? 'timed out' : 'could not reach Vault'
    return new VaultRequestError('unavailable', `Vault ${op.label} ${what} (${code})`, { code })
  }
  return new VaultRequestError('unavailable', `Vault ${op.label} failed (${code ?? (err instanceof Error ? err.name : 'unknown error')})`, { code })
}

function encodePath (path: string): string {
  return path.split('/').map(segment => encodeURIComponent(segment)).join('/')
}

function describeIssues (error: z.ZodError): string {
  // Issue paths name fields ("data.data.client_secret"), never values.
  return error.issues.slice(0, 3).map(issue => issue.path.map(String).join('.') || '(root)').join(', ')
}

/**
 * Creates the typed Vault client. node-vault is configured so that nothing leaks from the environment
 * behind our back: no default token from VAULT_TOKEN, no path prefix from VAULT_PREFIX, and no debug
 * output (node-vault's `debug` prints request bodies, login secrets included, when DEBUG is set).
 */
export function createVaultClient (deps: VaultClientDeps): VaultClient {
  const { log, timeoutMs } = deps
  // Our own agents: close() can then destroy a socket stuck on a hanging server.
  const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 16 })
  const httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 16, ...(deps.ca === undefined ? {} : { ca: [...deps.ca] }) })
  // vault.request() (used below) does not merge config.requestOptions, so every call passes them itself.
  const requestOptions = { timeout: timeoutMs, httpAgent, httpsAgent }
  const vault = createNodeVault({
    endpoint: deps.addr,
    apiVersion: 'v1',
    namespace: deps.namespace,
    debug: () => {},
    requestOptions
  })
  const internals = vault as unknown as { token: string, pathPrefix: string, namespace: string | undefined }
  internals.token = ''
  internals.pathPrefix = ''
  internals.namespace = deps.namespace
  let token: string | undefined
  let closed = false

  async function call<T> (op: Operation, method: 'GET' | 'POST', path: string, schema: z.ZodType<T>, body?: unknown): Promise<T> {
    if (closed) throw new VaultRequestError('unavailable', `Vault ${op.label} refused: the client is closed`)
    const started = Date.now()
    const headers: Record<string, string> = token === undefined || op.anonymous === true ? {} : { 'X-Vault-Token': token }
    const request = vault.request({ ...requestOptions, path: `/${path}`, method, headers, ...(body === undefined ? {} : { json: body }) }) as Promise<unknown>
    // The request loses the race below when the backstop fires; its later rejection is expected.
    request.catch(() => {})
    let timer: NodeJS.Timeout | undefined
    // Backstop over axios' own timeout, which only starts counting once a socket is assigned.
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(Object.assign(new Error('deadline'), { code: 'ETIMEDOUT' })) }, timeoutMs + 250)
      timer.unref()
    })
    let reply: unknown
    try {
      reply = await Promise.race([request, deadline])
    } catch (err) {
      const error = toVaultError(err, op, token)
      log.debug({ op: op.label, status: error.status, code: error.code, ms: Date.now() - started }, 'vault call failed')
      throw error
    } finally {
      clearTimeout(timer)
    }
    const parsed = schema.safeParse(reply)
    if (!parsed.success) {
      log.debug({ op: op.label, ms: Date.now() - started }, 'vault answer not understood')
      throw new VaultRequestError('invalid', `Vault ${op.label} answered an unexpected shape (${describeIssues(parsed.error)})`)
    }
    log.debug({ op: op.label, ms: Date.now() - started }, 'vault call')
    return parsed.data
  }

  return {
    setToken (value) { token = value === '' ? undefined : value },
    hasToken: () => token !== undefined,

    async readKv (mount, path, version) {
      const query = version === undefined ? '' : `?version=${version}`
      const label = `GET ${mount}/data/${path}`
      const reply = await call({ label }, 'GET', `${encodePath(mount)}/data/${encodePath(path)}${query}`, KvReadReply)
      if (reply.data.data === null) throw new VaultRequestError('not_found', `Vault ${label}: version ${reply.data.metadata.version} is deleted or destroyed`)
      return { data: Object.freeze({ ...reply.data.data }), version: reply.data.metadata.version }
    },

    async readKvVersion (mount, path) {
      return (await this.readKvMetadata(mount, path)).currentVersion
    },

    async readKvMetadata (mount, path) {
      const reply = await call({ label: `GET ${mount}/metadata/${path}` }, 'GET', `${encodePath(mount)}/metadata/${encodePath(path)}`, KvMetadataReply)
      const versions = new Map(Object.entries(reply.data.versions).map(([number, version]) => [Number(number), {
        createdAt: Date.parse(version.created_time),
        readable: version.deletion_time === '' && !version.destroyed
      }]))
      return { currentVersion: reply.data.current_version, versions }
    },

    async lookupSelf () {
      const reply = await call({ label: 'GET auth/token/lookup-self' }, 'GET', 'auth/token/lookup-self', LookupSelfReply)
      return {
        ttlSeconds: reply.data.ttl,
        renewable: reply.data.renewable,
        expireTime: reply.data.expire_time,
        creationTtlSeconds: reply.data.creation_ttl,
        explicitMaxTtlSeconds: reply.data.explicit_max_ttl
      }
    },

    async renewSelf (incrementSeconds) {
      const body = incrementSeconds === undefined ? {} : { increment: `${incrementSeconds}s` }
      const reply = await call({ label: 'POST auth/token/renew-self' }, 'POST', 'auth/token/renew-self', AuthReply, body)
      return { clientToken: reply.auth.client_token, leaseDurationSeconds: reply.auth.lease_duration, renewable: reply.auth.renewable }
    },

    async login (mount, body) {
      // Scrub the login material (secret_id, role_id, jwt) from Vault's answer; the role name may stay.
      const sensitive = Object.entries(body).filter(([key]) => key !== 'role').map(([, value]) => value)
      const op: Operation = { label: `POST auth/${mount}/login`, sensitive, badRequestReason: 'denied', anonymous: true }
      const reply = await call(op, 'POST', `auth/${encodePath(mount)}/login`, AuthReply, body)
      return { clientToken: reply.auth.client_token, leaseDurationSeconds: reply.auth.lease_duration, renewable: reply.auth.renewable }
    },

    async health () {
      // node-vault resolves sys/health for any status (429 standby, 503 sealed, 501 uninitialized).
      return await call({ label: 'GET sys/health', anonymous: true }, 'GET', 'sys/health', HealthReply)
    },

    close () {
      closed = true
      token = undefined
      httpAgent.destroy()
      httpsAgent.destroy()
    }
  }
}
