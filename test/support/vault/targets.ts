import { randomBytes } from 'node:crypto'
import { startVaultStandIn, type VaultStandIn } from './stand-in.js'
import { startTcpProxy, type TcpProxy } from '../tcp-proxy.js'

/**
 * A Vault the secret-source contract runs against: the stand-in, or a real Vault (VAULT_ADDR, or a
 * dev-mode container via testcontainers). Each target owns a random path prefix, policies and auth
 * mounts, and removes them on close, so nothing depends on what else the Vault holds.
 */
export interface VaultTarget {
  readonly label: string
  /** The address clients use; through a loopback proxy for a real Vault, so stop()/start() work. */
  readonly addr: string
  /** "<kv mount>/<unique prefix>": every secret this target writes lives under it. */
  readonly prefix: string
  /** The policy granting read on everything under `prefix` (data and metadata). */
  readonly readPolicy: string
  /** Writes a new version of "<mount>/<path>" (root token); returns the version number. */
  write: (path: string, data: Record<string, string>) => Promise<number>
  /**
   * A token reading everything under `prefix` ("all"), or only under `${prefix}/allowed/` ("allowed").
   * ttlSeconds 0 means no TTL.
   */
  createToken: (options: { ttlSeconds: number, renewable: boolean, explicitMaxTtlSeconds?: number, scope?: 'all' | 'allowed' }) => Promise<string>
  /** An AppRole on its own mount whose tokens read everything under `prefix`. */
  createAppRole: (options: { ttlSeconds: number, maxTtlSeconds: number }) => Promise<{ mount: string, roleId: string, secretId: string }>
  /** Revokes every token logged in on this auth mount (sys/leases/revoke-prefix). */
  revokeLogins: (mount: string) => Promise<void>
  seal: () => Promise<void>
  unseal: () => Promise<void>
  /** Vault unreachable (connection refused) / reachable again. */
  stop: () => Promise<void>
  start: () => Promise<void>
  /** The stand-in itself, for what a real Vault cannot do here (Kubernetes auth, counters, faults). */
  readonly standIn: VaultStandIn | undefined
  close: () => Promise<void>
}

export interface VaultTargetCapabilities {
  /** seal()/unseal() work (stand-in, or a container whose unseal key we know). */
  seal: boolean
  /** Kubernetes auth can be exercised (stand-in only: a real one needs a Kubernetes API for TokenReview). */
  kubernetes: boolean
  /** stop()/start() work (stand-in, or an http:// Vault behind the loopback proxy; TLS cannot be proxied). */
  stopStart: boolean
}

function uniqueName (prefix: string): string {
  return `${prefix}-${randomBytes(5).toString('hex')}`
}

/** The stand-in as a target. */
export async function standInTarget (): Promise<VaultTarget> {
  const vault = await startVaultStandIn()
  const prefixKey = uniqueName('cb-test')
  const prefix = `secret/${prefixKey}`
  vault.createPolicy(`${prefixKey}-all`, [`secret/data/${prefixKey}/*`, `secret/metadata/${prefixKey}/*`])
  vault.createPolicy(`${prefixKey}-allowed`, [`secret/data/${prefixKey}/allowed/*`, `secret/metadata/${prefixKey}/allowed/*`])
  return {
    label: 'stand-in',
    addr: vault.url,
    prefix,
    readPolicy: `${prefixKey}-all`,
    write: async (path, data) => vault.writeSecret(path, data),
    createToken: async options => vault.createToken({
      ttlSeconds: options.ttlSeconds,
      renewable: options.renewable,
      explicitMaxTtlSeconds: options.explicitMaxTtlSeconds ?? 0,
      policies: ['default', `${prefixKey}-${options.scope ?? 'all'}`]
    }),
    createAppRole: async options => {
      const mount = uniqueName('approle')
      const role = { mount, roleName: 'broker', roleId: randomBytes(16).toString('hex'), secretId: randomBytes(16).toString('hex') }
      vault.addAppRole({ ...role, tokenTtlSeconds: options.ttlSeconds, tokenMaxTtlSeconds: options.maxTtlSeconds, policies: [`${prefixKey}-all`] })
      return { mount, roleId: role.roleId, secretId: role.secretId }
    },
    revokeLogins: async mount => { vault.revokeLogins(mount) },
    seal: async () => { vault.seal() },
    unseal: async () => { vault.unseal() },
    stop: vault.stop,
    start: vault.start,
    standIn: vault,
    close: vault.close
  }
}

/** What the environment offers for a real Vault, decided once per test file (at collection time). */
export type RealVaultAvailability =
  | { available: true, source: 'VAULT_ADDR', addr: string, token: string, capabilities: VaultTargetCapabilities }
  | { available: true, source: 'testcontainers', capabilities: VaultTargetCapabilities }
  | { available: false, reason: string, capabilities: VaultTargetCapabilities }

/** The Vault image the container tests use: pinned so the contract is checked against a known version. */
export const vaultImage = 'hashicorp/vault:1.17'

/**
 * VAULT_ADDR + VAULT_TOKEN (a throwaway Vault: tests write KV under a random prefix, create policies,
 * tokens and an AppRole mount, and remove them), else testcontainers when a Docker engine answers. The
 * Docker probe fails in milliseconds when there is no engine ("Could not find a working container
 * runtime strategy").
 */
export async function detectRealVault (): Promise<RealVaultAvailability> {
  const addr = process.env.VAULT_ADDR
  if (addr !== undefined && addr !== '') {
    const token = process.env.VAULT_TOKEN
    if (token === undefined || token === '') {
      return { available: false, reason: 'VAULT_ADDR is set but VAULT_TOKEN is not (the tests need a token that can write KV, policies and auth mounts)', capabilities: { seal: false, kubernetes: false, stopStart: false } }
    }
    // Sealing a Vault we did not start is only done when its unseal key is handed to us.
    const unsealKey = process.env.VAULT_TEST_UNSEAL_KEY
    return { available: true, source: 'VAULT_ADDR', addr, token, capabilities: { seal: unsealKey !== undefined && unsealKey !== '', kubernetes: false, stopStart: addr.startsWith('http://') } }
  }
  try {
    const { getContainerRuntimeClient } = await import('testcontainers')
    await getContainerRuntimeClient()
    return { available: true, source: 'testcontainers', capabilities: { seal: true, kubernetes: false, stopStart: true } }
  } catch (err) {
    const said = (err as Error).message.split('\n')[0] ?? 'unknown error'
    return { available: false, reason: `no VAULT_ADDR and no Docker engine for testcontainers (${said})`, capabilities: { seal: false, kubernetes: false, stopStart: false } }
  }
}

async function vaultApi (addr: string, token: string, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const response = await fetch(`${addr}/v1/${path}`, {
    method,
    headers: { 'X-Vault-Token': token, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000)
  })
  const text = await response.text()
  if (!response.ok) throw new Error(`Vault ${method} ${path} answered ${response.status}: ${text.slice(0, 200)}`)
  return text === '' ? {} : JSON.parse(text) as Record<string, unknown>
}

/** A real Vault reached through a loopback proxy; `admin` is a root (or equally able) token. */
async function realTarget (label: string, upstream: string, admin: string, unsealKey: string | undefined, onClose: () => Promise<void>): Promise<VaultTarget> {
  const url = new URL(upstream)
  const proxy: TcpProxy | undefined = url.protocol === 'http:'
    ? await startTcpProxy({ host: url.hostname, port: Number(url.port === '' ? 80 : url.port) })
    : undefined
  const addr = proxy === undefined ? upstream : `http://127.0.0.1:${proxy.port}`
  const api = async (method: string, path: string, body?: unknown): Promise<Record<string, unknown>> => await vaultApi(upstream, admin, method, path, body)
  const kvMount = process.env.VAULT_TEST_KV_MOUNT ?? 'secret'
  const prefixKey = uniqueName('cb-test')
  const written = new Set<string>()
  const mounts: string[] = []
  const hcl = (paths: string[]): string => paths.map(path => `path "${path}" { capabilities = ["read"] }`).join('\n')
  await api('PUT', `sys/policies/acl/${prefixKey}-all`, { policy: hcl([`${kvMount}/data/${prefixKey}/*`, `${kvMount}/metadata/${prefixKey}/*`]) })
  await api('PUT', `sys/policies/acl/${prefixKey}-allowed`, { policy: hcl([`${kvMount}/data/${prefixKey}/allowed/*`, `${kvMount}/metadata/${prefixKey}/allowed/*`]) })

  return {
    label,
    addr,
    prefix: `${kvMount}/${prefixKey}`,
    readPolicy: `${prefixKey}-all`,
    async write (path, data) {
      const slash = path.indexOf('/')
      const mount = path.slice(0, slash)
      const key = path.slice(slash + 1)
      written.add(`${mount}/metadata/${key}`)
      const reply = await api('POST', `${mount}/data/${key}`, { data })
      return (reply.data as { version: number }).version
    },
    async createToken (options) {
      const reply = await api('POST', 'auth/token/create', {
        policies: ['default', `${prefixKey}-${options.scope ?? 'all'}`],
        no_default_policy: false,
        no_parent: true,
        renewable: options.renewable,
        ...(options.ttlSeconds > 0 ? { ttl: `${options.ttlSeconds}s` } : {}),
        ...(options.explicitMaxTtlSeconds === undefined ? {} : { explicit_max_ttl: `${options.explicitMaxTtlSeconds}s` })
      })
      return (reply.auth as { client_token: string }).client_token
    },
    async createAppRole (options) {
      const mount = uniqueName('approle')
      await api('POST', `sys/auth/${mount}`, { type: 'approle' })
      mounts.push(mount)
      await api('POST', `auth/${mount}/role/broker`, {
        token_ttl: `${options.ttlSeconds}s`, token_max_ttl: `${options.maxTtlSeconds}s`, token_policies: [`${prefixKey}-all`]
      })
      const roleId = ((await api('GET', `auth/${mount}/role/broker/role-id`)).data as { role_id: string }).role_id
      const secretId = ((await api('POST', `auth/${mount}/role/broker/secret-id`, {})).data as { secret_id: string }).secret_id
      return { mount, roleId, secretId }
    },
    revokeLogins: async mount => { await api('PUT', `sys/leases/revoke-prefix/auth/${mount}/login`, {}) },
    seal: async () => { await api('PUT', 'sys/seal') },
    async unseal () {
      if (unsealKey === undefined) throw new Error('no unseal key for this Vault')
      await api('PUT', 'sys/unseal', { key: unsealKey })
    },
    stop: async () => {
      if (proxy === undefined) throw new Error('stop() needs an http:// Vault (TLS cannot be proxied to 127.0.0.1)')
      await proxy.refuse()
    },
    start: async () => { await proxy?.accept() },
    standIn: undefined,
    async close () {
      await proxy?.close()
      for (const path of written) await api('DELETE', path).catch(() => {})
      for (const mount of mounts) await api('DELETE', `sys/auth/${mount}`).catch(() => {})
      await api('DELETE', `sys/policies/acl/${prefixKey}-all`).catch(() => {})
      await api('DELETE', `sys/policies/acl/${prefixKey}-allowed`).catch(() => {})
      await onClose()
    }
  }
}

/** A handle on the real Vault for one test file: targets share it; stop it in afterAll. */
export interface RealVault {
  target: () => Promise<VaultTarget>
  stop: () => Promise<void>
}

/** Starts (testcontainers) or connects to (VAULT_ADDR) the real Vault found by detectRealVault(). */
export async function startRealVault (availability: RealVaultAvailability): Promise<RealVault> {
  if (!availability.available) throw new Error(availability.reason)
  if (availability.source === 'VAULT_ADDR') {
    const upstream = availability.addr.replace(/\/+$/, '')
    const unsealKey = process.env.VAULT_TEST_UNSEAL_KEY
    return {
      target: async () => await realTarget(`real Vault at ${upstream}`, upstream, availability.token, unsealKey === '' ? undefined : unsealKey, async () => {}),
      stop: async () => {}
    }
  }
  const { GenericContainer, Wait } = await import('testcontainers')
  const rootToken = `root-${randomBytes(12).toString('hex')}`
  const container = await new GenericContainer(vaultImage)
    .withEnvironment({ VAULT_DEV_ROOT_TOKEN_ID: rootToken, VAULT_DEV_LISTEN_ADDRESS: '0.0.0.0:8200' })
    .withAddedCapabilities('IPC_LOCK')
    .withExposedPorts(8200)
    .withWaitStrategy(Wait.forHttp('/v1/sys/health', 8200).forStatusCode(200))
    .start()
  const upstream = `http://${container.getHost()}:${container.getMappedPort(8200)}`
  // Dev mode prints its single unseal key at start; reading it lets the seal test unseal again.
  const unsealKey = await new Promise<string | undefined>(resolve => {
    let seen = ''
    const timer = setTimeout(() => { resolve(undefined) }, 10_000)
    container.logs().then(stream => {
      stream.on('data', (chunk: Buffer | string) => {
        seen += chunk.toString()
        const match = /Unseal Key:\s*(\S+)/.exec(seen)
        if (match?.[1] !== undefined) {
          clearTimeout(timer)
          stream.destroy()
          resolve(match[1])
        }
      })
      stream.on('error', () => { clearTimeout(timer); resolve(undefined) })
    }).catch(() => { clearTimeout(timer); resolve(undefined) })
  })
  return {
    target: async () => await realTarget(`${vaultImage} (testcontainers, dev mode)`, upstream, rootToken, unsealKey, async () => {}),
    stop: async () => { await container.stop() }
  }
}
