import { randomBytes, randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import type { Socket } from 'node:net'

/**
 * A stand-in for the parts of Vault's HTTP API the broker uses, following Vault's documented request
 * and reply shapes (developer.hashicorp.com/vault/api-docs):
 *   - KV v2: GET <mount>/data/<path>[?version=n], POST <mount>/data/<path> (root), GET/DELETE <mount>/metadata/<path>
 *   - token: GET auth/token/lookup-self, POST auth/token/renew-self { increment }
 *   - logins: POST auth/<approle mount>/login { role_id, secret_id }, POST auth/<kubernetes mount>/login { role, jwt }
 *   - sys/health (200 active, 429 standby, 503 sealed; standbyok/activecode/standbycode/sealedcode),
 *     PUT sys/seal (root), PUT sys/unseal { key }
 *   - errors as { "errors": [...] }: 403 "permission denied" (bad or expired token), 403 "missing client
 *     token", 404 { "errors": [] } (no secret), 503 "Vault is sealed", 400 "lease is not renewable".
 * Token TTLs count down on `now()` (real time by default). Renewal is capped by the token's explicit max
 * TTL and its role's max TTL, with Vault's warning. Listens on 127.0.0.1 only, over TLS when given a key
 * and certificate. KV v2 mounts: "secret", plus any added with addKvMount (names may hold slashes, e.g.
 * "kv/platform"; a path is matched against the longest mount, as Vault's router does).
 */
export interface VaultStandIn {
  readonly url: string
  readonly port: number
  /** A root token (no TTL, every policy). */
  readonly rootToken: string
  /** The key PUT sys/unseal accepts. */
  readonly unsealKey: string
  /** Writes a new KV v2 version of "<mount>/<path>" (or "<mount>:<path>") and returns its version number. */
  writeSecret: (path: string, data: Record<string, string>) => number
  /** Deletes all versions and the metadata of "<mount>/<path>" (or "<mount>:<path>"). */
  deleteSecret: (path: string) => void
  /** Soft-deletes one version (DELETE <mount>/data/<path> with versions) or destroys it (PUT <mount>/destroy/<path>). */
  retireVersion: (path: string, version: number, how: 'delete' | 'destroy') => void
  /** Enables a KV v2 mount (sys/mounts/<mount> with type kv, version 2); its name may hold slashes. */
  addKvMount: (mount: string) => void
  /** A named policy granting read on Vault-style paths ("secret/data/app/*", exact or trailing-* prefix). */
  createPolicy: (name: string, readPaths: readonly string[]) => void
  /** A token as `auth/token/create` would make it. */
  createToken: (options?: StandInTokenOptions) => string
  revokeToken: (token: string) => void
  /** Revokes every token issued by logins on this auth mount (sys/leases/revoke-prefix/auth/<mount>). */
  revokeLogins: (mount: string) => void
  addAppRole: (role: StandInAppRole) => void
  addKubernetesRole: (role: StandInKubernetesRole) => void
  /** Replaces the service account JWTs a Kubernetes role accepts (a rotated projected token). */
  setKubernetesJwts: (role: string, jwts: readonly string[], mount?: string) => void
  seal: () => void
  unseal: () => void
  /** sys/health answers 429 (standby); requests are still served, as a standby forwards them. */
  setStandby: (standby: boolean) => void
  /** Stops listening and drops open connections: clients get ECONNREFUSED. */
  stop: () => Promise<void>
  /** Listens again on the same port. */
  start: () => Promise<void>
  /** Accepts requests and never answers (until hang(false), which drops them, or close). */
  hang: (on: boolean) => void
  /** Answers every request with this status and a Vault error body; undefined restores normal service. */
  failWith: (status: number | undefined) => void
  /** Requests seen for "METHOD path" (path without /v1/ and query), e.g. count('POST', 'auth/approle/login'). */
  count: (method: string, path: string) => number
  readonly requests: readonly StandInRequest[]
  close: () => Promise<void>
}

export interface StandInTokenOptions {
  /** 0: no expiry (like a root token). Default 3600. */
  ttlSeconds?: number
  renewable?: boolean
  /** 0: none. */
  explicitMaxTtlSeconds?: number
  /** Policy names; "root" grants everything. Default ["default"]. */
  policies?: readonly string[]
}

export interface StandInAppRole {
  mount?: string
  roleName: string
  roleId: string
  secretId: string
  tokenTtlSeconds: number
  /** 0: the system max (32 days). */
  tokenMaxTtlSeconds?: number
  policies?: readonly string[]
}

export interface StandInKubernetesRole {
  mount?: string
  role: string
  /** Service account JWTs this role accepts (the stand-in does no TokenReview). */
  jwts: readonly string[]
  tokenTtlSeconds: number
  tokenMaxTtlSeconds?: number
  policies?: readonly string[]
}

export interface StandInRequest {
  method: string
  path: string
  hadToken: boolean
  namespace: string | undefined
}

interface TokenEntry {
  id: string
  accessor: string
  policies: readonly string[]
  path: string
  createdAt: number
  creationTtl: number
  expiresAt: number | undefined
  explicitMaxTtl: number
  maxTtl: number
  renewable: boolean
  meta: Record<string, string> | null
}

interface SecretVersion {
  data: Record<string, string>
  createdTime: string
  deletionTime: string
  destroyed: boolean
}

interface SecretEntry {
  createdTime: string
  updatedTime: string
  versions: Map<number, SecretVersion>
  currentVersion: number
}

/** Vault's system default max lease TTL: 768 h. */
const systemMaxTtlSeconds = 768 * 3600

const base62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
function randomId (length: number): string {
  return [...randomBytes(length)].map(byte => base62[byte % 62]).join('')
}

/** Parses a Vault duration: seconds as a number or numeric string, or "90s", "5m", "1h". */
function parseDuration (value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return Math.floor(value)
  if (typeof value !== 'string') return undefined
  const match = /^(\d+)(s|m|h)?$/.exec(value.trim())
  if (match === null) return undefined
  const amount = Number(match[1])
  return match[2] === 'h' ? amount * 3600 : match[2] === 'm' ? amount * 60 : amount
}

function envelope (fields: { data?: unknown, auth?: unknown, warnings?: string[] | null, mountType?: string }): Record<string, unknown> {
  return {
    request_id: randomUUID(),
    lease_id: '',
    renewable: false,
    lease_duration: 0,
    data: fields.data ?? null,
    wrap_info: null,
    warnings: fields.warnings ?? null,
    auth: fields.auth ?? null,
    mount_type: fields.mountType ?? ''
  }
}

/** Starts the stand-in on 127.0.0.1, port 0 (or the given port). */
export async function startVaultStandIn (options: { now?: () => number, port?: number, tls?: { key: string, cert: string } } = {}): Promise<VaultStandIn> {
  const now = options.now ?? Date.now
  const rootToken = `hvs.${randomId(24)}`
  const unsealKey = randomBytes(32).toString('base64')
  const tokens = new Map<string, TokenEntry>()
  const policies = new Map<string, readonly string[]>()
  const secrets = new Map<string, SecretEntry>()
  const appRoles = new Map<string, Required<StandInAppRole>>()
  const kubernetesRoles = new Map<string, Required<StandInKubernetesRole>>()
  const kvMounts = new Set(['secret'])
  const requests: StandInRequest[] = []
  const sockets = new Set<Socket>()
  const hung: ServerResponse[] = []
  let sealed = false
  let standby = false
  let hanging = false
  let failStatus: number | undefined

  tokens.set(rootToken, {
    id: rootToken, accessor: randomId(24), policies: ['root'], path: 'auth/token/root', createdAt: now(), creationTtl: 0,
    expiresAt: undefined, explicitMaxTtl: 0, maxTtl: 0, renewable: false, meta: null
  })

  function issueToken (fields: { policies: readonly string[], path: string, ttl: number, maxTtl: number, explicitMaxTtl: number, renewable: boolean, meta: Record<string, string> | null }): TokenEntry {
    const createdAt = now()
    const entry: TokenEntry = {
      id: `hvs.${randomId(24)}`,
      accessor: randomId(24),
      policies: fields.policies,
      path: fields.path,
      createdAt,
      creationTtl: fields.ttl,
      expiresAt: fields.ttl > 0 ? createdAt + fields.ttl * 1000 : undefined,
      explicitMaxTtl: fields.explicitMaxTtl,
      maxTtl: fields.maxTtl,
      renewable: fields.renewable && fields.ttl > 0,
      meta: fields.meta
    }
    tokens.set(entry.id, entry)
    return entry
  }

  function liveToken (id: string | undefined): TokenEntry | undefined {
    if (id === undefined) return undefined
    const entry = tokens.get(id)
    if (entry === undefined) return undefined
    if (entry.expiresAt !== undefined && now() >= entry.expiresAt) {
      tokens.delete(id)
      return undefined
    }
    return entry
  }

  function ttlOf (entry: TokenEntry): number {
    return entry.expiresAt === undefined ? 0 : Math.max(0, Math.floor((entry.expiresAt - now()) / 1000))
  }

  function authBlock (entry: TokenEntry, leaseDuration: number): Record<string, unknown> {
    return {
      client_token: entry.id,
      accessor: entry.accessor,
      policies: [...entry.policies],
      token_policies: [...entry.policies],
      metadata: entry.meta,
      lease_duration: leaseDuration,
      renewable: entry.renewable,
      entity_id: '',
      token_type: 'service',
      orphan: true,
      mfa_requirement: null,
      num_uses: 0
    }
  }

  function mayRead (entry: TokenEntry, path: string): boolean {
    if (entry.policies.includes('root')) return true
    for (const name of entry.policies) {
      for (const pattern of policies.get(name) ?? []) {
        if (pattern.endsWith('*') ? path.startsWith(pattern.slice(0, -1)) : path === pattern) return true
      }
    }
    return false
  }

  function send (res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body)
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) })
    res.end(text)
  }
  const fail = (res: ServerResponse, status: number, errors: string[]): void => { send(res, status, { errors }) }

  function splitKvPath (path: string): { mount: string, kind: string, key: string } | undefined {
    const mount = [...kvMounts].filter(candidate => path.startsWith(`${candidate}/`)).sort((a, b) => b.length - a.length)[0]
    if (mount === undefined) return undefined
    const [kind, ...rest] = path.slice(mount.length + 1).split('/')
    if (kind === undefined || rest.length === 0) return undefined
    return { mount, kind, key: rest.map(segment => decodeURIComponent(segment)).join('/') }
  }

  /** "<mount>:<path>" → "<mount>/<path>", the key secrets are kept under; "<mount>/<path>" as is. */
  function storedPath (path: string): string {
    const colon = path.indexOf(':')
    return colon === -1 ? path : `${path.slice(0, colon)}/${path.slice(colon + 1)}`
  }

  function writeVersion (fullPath: string, data: Record<string, string>): SecretVersion & { version: number } {
    const created = new Date(now()).toISOString()
    let entry = secrets.get(fullPath)
    if (entry === undefined) {
      entry = { createdTime: created, updatedTime: created, versions: new Map(), currentVersion: 0 }
      secrets.set(fullPath, entry)
    }
    entry.currentVersion += 1
    entry.updatedTime = created
    const version: SecretVersion = { data: { ...data }, createdTime: created, deletionTime: '', destroyed: false }
    entry.versions.set(entry.currentVersion, version)
    return { ...version, version: entry.currentVersion }
  }

  function versionMetadata (version: SecretVersion, number: number): Record<string, unknown> {
    return { created_time: version.createdTime, custom_metadata: null, deletion_time: version.deletionTime, destroyed: version.destroyed, version: number }
  }

  function handleHealth (res: ServerResponse, query: URLSearchParams, method: string): void {
    const code = (name: string, fallback: number): number => {
      const value = Number(query.get(name))
      return Number.isInteger(value) && value > 0 ? value : fallback
    }
    const status = sealed
      ? code('sealedcode', 503)
      : standby && query.get('standbyok') !== 'true' ? code('standbycode', 429) : code('activecode', 200)
    const body = {
      initialized: true,
      sealed,
      standby: sealed || standby,
      performance_standby: false,
      replication_performance_mode: 'disabled',
      replication_dr_mode: 'disabled',
      server_time_utc: Math.floor(now() / 1000),
      version: '1.17.0+stand-in',
      cluster_name: 'vault-cluster-stand-in',
      cluster_id: '00000000-0000-4000-8000-000000000000'
    }
    if (method === 'HEAD') {
      res.writeHead(status)
      res.end()
      return
    }
    send(res, status, body)
  }

  function handleLogin (res: ServerResponse, mount: string, body: Record<string, unknown>): void {
    const appRole = [...appRoles.values()].find(role => role.mount === mount)
    const hasKubernetes = [...kubernetesRoles.values()].some(role => role.mount === mount)
    if (appRole !== undefined || (!hasKubernetes && mount === 'approle')) {
      if (typeof body.role_id !== 'string' || body.role_id === '') return fail(res, 400, ['missing role_id'])
      const role = [...appRoles.values()].find(candidate => candidate.mount === mount && candidate.roleId === body.role_id)
      if (role === undefined || body.secret_id !== role.secretId) return fail(res, 400, ['invalid role or secret ID'])
      const entry = issueToken({
        policies: ['default', ...role.policies], path: `auth/${mount}/login`, ttl: role.tokenTtlSeconds, maxTtl: role.tokenMaxTtlSeconds,
        explicitMaxTtl: 0, renewable: true, meta: { role_name: role.roleName }
      })
      return send(res, 200, envelope({ auth: authBlock(entry, role.tokenTtlSeconds) }))
    }
    if (hasKubernetes) {
      if (typeof body.role !== 'string' || body.role === '') return fail(res, 400, ['missing role'])
      if (typeof body.jwt !== 'string' || body.jwt === '') return fail(res, 400, ['missing jwt'])
      const role = kubernetesRoles.get(`${mount}/${body.role}`)
      if (role === undefined) return fail(res, 400, [`invalid role name "${body.role}"`])
      if (!role.jwts.includes(body.jwt)) return fail(res, 403, ['permission denied'])
      const entry = issueToken({
        policies: ['default', ...role.policies], path: `auth/${mount}/login`, ttl: role.tokenTtlSeconds, maxTtl: role.tokenMaxTtlSeconds,
        explicitMaxTtl: 0, renewable: true,
        meta: { role: role.role, service_account_name: 'credential-broker', service_account_namespace: 'default', service_account_secret_name: '', service_account_uid: randomUUID() }
      })
      return send(res, 200, envelope({ auth: authBlock(entry, role.tokenTtlSeconds) }))
    }
    fail(res, 400, [`no handler for route "auth/${mount}/login". route entry not found.`])
  }

  function handleRenewSelf (res: ServerResponse, entry: TokenEntry, body: Record<string, unknown>): void {
    if (!entry.renewable) return fail(res, 400, ['lease is not renewable'])
    const increment = body.increment === undefined || body.increment === '' ? entry.creationTtl : parseDuration(body.increment)
    if (increment === undefined) return fail(res, 400, ['invalid increment'])
    const limits = [entry.explicitMaxTtl, entry.maxTtl > 0 ? entry.maxTtl : systemMaxTtlSeconds].filter(limit => limit > 0)
    const maxExpiresAt = entry.createdAt + Math.min(...limits) * 1000
    const wanted = now() + increment * 1000
    const expiresAt = Math.min(wanted, maxExpiresAt)
    entry.expiresAt = expiresAt
    const lease = Math.max(0, Math.floor((expiresAt - now()) / 1000))
    const warnings = wanted > maxExpiresAt
      ? [`TTL of "${increment}s" exceeded the effective max_ttl of "${lease}s"; TTL value is capped accordingly`]
      : null
    send(res, 200, envelope({ auth: authBlock(entry, lease), warnings }))
  }

  function handleLookupSelf (res: ServerResponse, entry: TokenEntry): void {
    send(res, 200, envelope({
      data: {
        accessor: entry.accessor,
        creation_time: Math.floor(entry.createdAt / 1000),
        creation_ttl: entry.creationTtl,
        display_name: entry.path.replace(/\//g, '-'),
        entity_id: '',
        expire_time: entry.expiresAt === undefined ? null : new Date(entry.expiresAt).toISOString(),
        explicit_max_ttl: entry.explicitMaxTtl,
        // Vault does return the token itself here: a client must never log this reply.
        id: entry.id,
        issue_time: new Date(entry.createdAt).toISOString(),
        meta: entry.meta,
        num_uses: 0,
        orphan: true,
        path: entry.path,
        policies: [...entry.policies],
        renewable: entry.renewable,
        ttl: ttlOf(entry),
        type: 'service'
      }
    }))
  }

  function handleKv (res: ServerResponse, method: string, path: string, query: URLSearchParams, entry: TokenEntry, body: Record<string, unknown>): void {
    const parts = splitKvPath(path)
    if (parts === undefined) return fail(res, 404, [`no handler for route "${path}". route entry not found.`])
    const fullPath = `${parts.mount}/${parts.key}`
    if (parts.kind === 'data' && method === 'GET') {
      if (!mayRead(entry, path)) return fail(res, 403, ['permission denied'])
      const secret = secrets.get(fullPath)
      if (secret === undefined) return fail(res, 404, [])
      const wanted = query.has('version') && query.get('version') !== '0' ? Number(query.get('version')) : secret.currentVersion
      const version = secret.versions.get(wanted)
      if (version === undefined) return fail(res, 404, [])
      if (version.deletionTime !== '' || version.destroyed) {
        // Vault answers 404 with the metadata and data: null for a deleted or destroyed version.
        return send(res, 404, envelope({ data: { data: null, metadata: versionMetadata(version, wanted) }, mountType: 'kv' }))
      }
      return send(res, 200, envelope({ data: { data: { ...version.data }, metadata: versionMetadata(version, wanted) }, mountType: 'kv' }))
    }
    if (parts.kind === 'data' && (method === 'POST' || method === 'PUT')) {
      if (!entry.policies.includes('root')) return fail(res, 403, ['permission denied'])
      const data = body.data
      if (typeof data !== 'object' || data === null) return fail(res, 400, ['no data provided'])
      const written = writeVersion(fullPath, Object.fromEntries(Object.entries(data).map(([key, value]) => [key, String(value)])))
      return send(res, 200, envelope({ data: versionMetadata(written, written.version), mountType: 'kv' }))
    }
    if (parts.kind === 'metadata' && method === 'GET') {
      if (!mayRead(entry, path)) return fail(res, 403, ['permission denied'])
      const secret = secrets.get(fullPath)
      if (secret === undefined) return fail(res, 404, [])
      const versions = Object.fromEntries([...secret.versions.entries()].map(([number, version]) => [String(number), {
        created_time: version.createdTime, deletion_time: version.deletionTime, destroyed: version.destroyed
      }]))
      return send(res, 200, envelope({
        data: {
          cas_required: false, created_time: secret.createdTime, current_version: secret.currentVersion, custom_metadata: null,
          delete_version_after: '0s', max_versions: 0, oldest_version: 0, updated_time: secret.updatedTime, versions
        },
        mountType: 'kv'
      }))
    }
    if (parts.kind === 'metadata' && method === 'DELETE') {
      if (!entry.policies.includes('root')) return fail(res, 403, ['permission denied'])
      secrets.delete(fullPath)
      res.writeHead(204)
      res.end()
      return
    }
    fail(res, 405, ['unsupported operation'])
  }

  function route (req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>): void {
    const method = req.method ?? 'GET'
    const url = new URL(req.url ?? '/', 'http://stand-in')
    if (!url.pathname.startsWith('/v1/')) return fail(res, 404, [])
    const path = url.pathname.slice(4)
    const header = req.headers['x-vault-token']
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1]
    const tokenId = (Array.isArray(header) ? header[0] : header) ?? bearer
    const namespace = req.headers['x-vault-namespace']
    requests.push({ method, path, hadToken: tokenId !== undefined, namespace: Array.isArray(namespace) ? namespace[0] : namespace })

    if (path === 'sys/health') return handleHealth(res, url.searchParams, method)
    if (path === 'sys/unseal' && (method === 'PUT' || method === 'POST')) {
      if (body.key !== unsealKey) return fail(res, 400, ['invalid key'])
      sealed = false
      return send(res, 200, { type: 'shamir', initialized: true, sealed: false, t: 1, n: 1, progress: 0, nonce: '', version: '1.17.0+stand-in' })
    }
    if (sealed) return fail(res, 503, ['Vault is sealed'])

    const login = /^auth\/([^/]+)\/login$/.exec(path)
    if (login?.[1] !== undefined && login[1] !== 'token' && (method === 'POST' || method === 'PUT')) return handleLogin(res, login[1], body)

    if (tokenId === undefined) return fail(res, 403, ['missing client token'])
    const entry = liveToken(tokenId)
    if (entry === undefined) return fail(res, 403, ['permission denied'])

    if (path === 'auth/token/lookup-self' && method === 'GET') return handleLookupSelf(res, entry)
    if (path === 'auth/token/renew-self' && (method === 'POST' || method === 'PUT')) return handleRenewSelf(res, entry, body)
    if (path === 'sys/seal' && (method === 'PUT' || method === 'POST')) {
      if (!entry.policies.includes('root')) return fail(res, 403, ['permission denied'])
      sealed = true
      res.writeHead(204)
      res.end()
      return
    }
    handleKv(res, method, path, url.searchParams, entry, body)
  }

  const onRequest: RequestListener = (req, res) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size <= 1024 * 1024) chunks.push(chunk)
    })
    req.on('end', () => {
      if (hanging) {
        hung.push(res)
        return
      }
      if (failStatus !== undefined) {
        requests.push({ method: req.method ?? 'GET', path: (req.url ?? '').replace(/^\/v1\//, '').split('?')[0] ?? '', hadToken: false, namespace: undefined })
        return fail(res, failStatus, ['1 error occurred:\n\t* internal error\n\n'])
      }
      let body: Record<string, unknown> = {}
      if (size > 0) {
        try {
          const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'))
          if (typeof parsed === 'object' && parsed !== null) body = parsed as Record<string, unknown>
        } catch {
          return fail(res, 400, ['failed to parse JSON input'])
        }
      }
      route(req, res, body)
    })
  }
  const server: Server = options.tls === undefined ? createServer(onRequest) : createTlsServer({ key: options.tls.key, cert: options.tls.cert }, onRequest)
  server.on('connection', socket => {
    sockets.add(socket)
    socket.on('close', () => { sockets.delete(socket) })
  })

  async function listen (port: number): Promise<number> {
    return await new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject)
        const address = server.address()
        resolve(typeof address === 'object' && address !== null ? address.port : port)
      })
    })
  }

  function dropConnections (): void {
    hung.length = 0
    for (const socket of sockets) socket.destroy()
  }

  async function stop (): Promise<void> {
    if (!server.listening) return
    const closed = new Promise<void>(resolve => { server.close(() => { resolve() }) })
    dropConnections()
    await closed
  }

  const port = await listen(options.port ?? 0)

  return {
    url: `${options.tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`,
    port,
    rootToken,
    unsealKey,
    writeSecret: (path, data) => writeVersion(storedPath(path), data).version,
    deleteSecret: path => { secrets.delete(storedPath(path)) },
    retireVersion: (path, number, how) => {
      const version = secrets.get(storedPath(path))?.versions.get(number)
      if (version === undefined) throw new Error(`no version ${number} of ${path}`)
      if (how === 'delete') version.deletionTime = new Date(now()).toISOString()
      else version.destroyed = true
    },
    addKvMount: mount => { kvMounts.add(mount.replace(/^\/+|\/+$/g, '')) },
    createPolicy: (name, readPaths) => { policies.set(name, [...readPaths]) },
    createToken: (tokenOptions = {}) => issueToken({
      policies: tokenOptions.policies ?? ['default'],
      path: 'auth/token/create',
      ttl: tokenOptions.ttlSeconds ?? 3600,
      maxTtl: 0,
      explicitMaxTtl: tokenOptions.explicitMaxTtlSeconds ?? 0,
      renewable: tokenOptions.renewable ?? true,
      meta: null
    }).id,
    revokeToken: token => { tokens.delete(token) },
    revokeLogins: mount => {
      for (const [id, entry] of tokens) if (entry.path === `auth/${mount}/login`) tokens.delete(id)
    },
    addAppRole: role => {
      appRoles.set(`${role.mount ?? 'approle'}/${role.roleName}`, {
        mount: role.mount ?? 'approle', tokenMaxTtlSeconds: 0, policies: [], ...role
      })
    },
    addKubernetesRole: role => {
      kubernetesRoles.set(`${role.mount ?? 'kubernetes'}/${role.role}`, {
        mount: role.mount ?? 'kubernetes', tokenMaxTtlSeconds: 0, policies: [], ...role, jwts: [...role.jwts]
      })
    },
    setKubernetesJwts: (role, jwts, mount = 'kubernetes') => {
      const entry = kubernetesRoles.get(`${mount}/${role}`)
      if (entry === undefined) throw new Error(`no Kubernetes role ${mount}/${role}`)
      entry.jwts = [...jwts]
    },
    seal: () => { sealed = true },
    unseal: () => { sealed = false },
    setStandby: value => { standby = value },
    stop,
    start: async () => {
      if (!server.listening) await listen(port)
    },
    hang: on => {
      hanging = on
      if (!on) for (const res of hung.splice(0)) res.socket?.destroy()
    },
    failWith: status => { failStatus = status },
    count: (method, path) => requests.filter(request => request.method === method && request.path === path).length,
    requests,
    close: async () => {
      hanging = false
      await stop()
    }
  }
}
