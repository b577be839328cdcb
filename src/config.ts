import { X509Certificate } from 'node:crypto'
import { readFileSync, readdirSync, existsSync, statSync } from 'node:fs'
import { resolve, dirname, extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import { parse as parseYaml } from 'yaml'
import { ConfigError, StoreError } from './errors.js'
import { parseEncryptionKeySetting } from './store/encryption.js'
import { isSecretPath } from './secrets/secret-path.js'
import { descriptorOf, providerKinds } from './providers/catalog.js'

/** Where the checked-in example credentials and secrets live (used only in embedded mode). */
export const embeddedDir = join(dirname(fileURLToPath(import.meta.url)), 'embedded')
export const embeddedCredentialsFile = join(embeddedDir, 'credentials.example.yaml')
export const embeddedSecretsFile = join(embeddedDir, 'secrets.example.json')


const emptyToUndefined = (value: unknown): unknown => value === '' ? undefined : value
const optionalString = z.preprocess(emptyToUndefined, z.string().optional())

const httpUrl = z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' })

export const EnvSchema = z.object({
  PORT: z.preprocess(emptyToUndefined, z.coerce.number({ error: 'expected a port number' })
    .int('expected a whole port number').min(0, 'expected 0-65535').max(65535, 'expected 0-65535').default(8080)),
  HOST: z.preprocess(emptyToUndefined, z.string().default('0.0.0.0')),
  LOG_LEVEL: z.preprocess(emptyToUndefined, z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info')),
  CREDENTIALS_FILE: optionalString,
  REDIS_URL: z.preprocess(emptyToUndefined, z.url({ protocol: /^rediss?$/, error: 'expected a redis:// or rediss:// URL' }).optional()),
  REDIS_KEY_PREFIX: z.preprocess(emptyToUndefined, z.string()
    .regex(/^[A-Za-z0-9_.-]{1,32}$/, 'expected 1-32 characters of A-Z a-z 0-9 _ . -').default('cb')),
  /** Redis through Sentinel, instead of REDIS_URL: the sentinels' host:port list (parsed in loadConfig). */
  REDIS_SENTINELS: optionalString,
  REDIS_SENTINEL_MASTER: optionalString,
  REDIS_SENTINEL_PASSWORD: optionalString,
  /** Redis Cluster, instead of REDIS_URL: seed nodes host:port (parsed in loadConfig). */
  REDIS_CLUSTER_NODES: optionalString,
  REDIS_USERNAME: optionalString,
  REDIS_PASSWORD: optionalString,
  REDIS_TLS: z.preprocess(emptyToUndefined, z.enum(['true', 'false'], { error: 'expected true or false' }).optional()),
  /** A PEM file of the CA(s) that signed the Redis servers' certificates (TLS only); default: the system CAs. */
  REDIS_CACERT: optionalString,
  VAULT_ADDR: z.preprocess(emptyToUndefined, httpUrl.optional()),
  VAULT_NAMESPACE: optionalString,
  VAULT_AUTH: z.preprocess(emptyToUndefined, z.enum(['token', 'approle', 'kubernetes']).default('token')),
  VAULT_TOKEN: optionalString,
  /** A file holding the token (a Vault Agent sink): read at start and again whenever Vault stops accepting the token. */
  VAULT_TOKEN_FILE: optionalString,
  /** PEM file of the CA(s) that sign Vault's TLS certificate; takes precedence over VAULT_CAPATH (as for the Vault CLI). */
  VAULT_CACERT: optionalString,
  /** Directory of PEM CA files for Vault's TLS. */
  VAULT_CAPATH: optionalString,
  VAULT_ROLE_ID: optionalString,
  VAULT_ROLE_ID_FILE: optionalString,
  VAULT_SECRET_ID: optionalString,
  VAULT_SECRET_ID_FILE: optionalString,
  VAULT_APPROLE_MOUNT: z.preprocess(emptyToUndefined, z.string().default('approle')),
  VAULT_K8S_ROLE: optionalString,
  VAULT_K8S_TOKEN_PATH: z.preprocess(emptyToUndefined, z.string().default('/var/run/secrets/kubernetes.io/serviceaccount/token')),
  VAULT_K8S_MOUNT: z.preprocess(emptyToUndefined, z.string().default('kubernetes')),
  VAULT_TIMEOUT_MS: z.preprocess(emptyToUndefined, z.coerce.number().int().min(100).max(60_000).default(5000)),
  SECRET_CHECK_INTERVAL_SECONDS: z.preprocess(emptyToUndefined, z.coerce.number().int().min(5).max(86_400).default(60)),
  SECRETS_FILE: optionalString,
  /**
   * Requests each caller may make per minute to the /v1 API, counted across all replicas in Redis (in
   * memory without REDIS_URL). Generous by default: services ask for a token hundreds of times a second,
   * and the limit is there to stop a runaway client, not to shape normal traffic.
   */
  RATE_LIMIT_PER_MINUTE: z.preprocess(emptyToUndefined, z.coerce.number({ error: 'expected a number of requests per minute' })
    .int('expected a whole number of requests per minute').min(1, 'expected at least 1').max(1_000_000_000, 'expected at most 1000000000').default(6000)),
  TOKEN_ENCRYPTION_KEY: optionalString,
  NODE_ENV: optionalString
})
export type Env = z.infer<typeof EnvSchema>

const credentialId = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'expected 1-64 characters of a-z 0-9 . _ - starting with a letter or digit')

export const CallerSchema = z.strictObject({
  id: credentialId,
  api_key_sha256: z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex characters (sha256 of the API key)').optional(),
  jwt_subject: z.string().min(1).optional(),
  admin: z.boolean().default(false),
  /** Front-end callers never receive backend-only credentials (all partner tokens). */
  frontend: z.boolean().default(false)
}).refine(caller => caller.api_key_sha256 !== undefined || caller.jwt_subject !== undefined, {
  message: 'expected api_key_sha256 or jwt_subject (a caller needs a way to authenticate)'
})
export type Caller = z.infer<typeof CallerSchema>

export const CallerJwtSchema = z.strictObject({
  issuer: z.string().min(1),
  audience: z.string().min(1),
  jwks_url: httpUrl.optional(),
  jwks_file: z.string().min(1).optional(),
  algorithms: z.array(z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']))
    .min(1).default(['RS256', 'ES256']),
  clock_tolerance_seconds: z.number().int().min(0).max(300).default(30)
}).refine(jwt => (jwt.jwks_url === undefined) !== (jwt.jwks_file === undefined), {
  message: 'expected exactly one of jwks_url or jwks_file'
})
export type CallerJwt = z.infer<typeof CallerJwtSchema>

export const RefreshPolicySchema = z.strictObject({
  /** Refresh when this share of the lifetime has passed. */
  ratio: z.number().gt(0, 'expected a ratio above 0').lt(1, 'expected a ratio below 1').default(0.75),
  /** ...or this long before expiry, whichever comes first. */
  margin_seconds: z.number().int().min(0).default(300),
  /** Spread of the refresh time, as a share of the lifetime (±). */
  jitter_ratio: z.number().min(0).max(0.2).default(0.05)
})
export type RefreshPolicy = z.infer<typeof RefreshPolicySchema>

export const CredentialSchema = z.strictObject({
  id: credentialId,
  provider: z.enum(providerKinds),
  environment: z.enum(['sandbox', 'production']),
  secret: z.string().refine(isSecretPath, 'expected "<mount>/<path>" (KV v2), "<mount>:<path>" for a mount whose name has a slash (e.g. "kv/platform:providers/kivra"), or a SECRETS_FILE key of either form'),
  base_url: httpUrl.optional(),
  token_url: httpUrl.optional(),
  client_auth: z.enum(['basic', 'post']).default('basic'),
  scope: z.string().min(1).optional(),
  audience: z.string().min(1).optional(),
  lifetime_seconds: z.number().int().min(10, 'expected at least 10 seconds').max(31 * 86_400).optional(),
  timeout_ms: z.number().int().min(100).max(60_000).default(10_000),
  refresh: RefreshPolicySchema.default(RefreshPolicySchema.parse({})),
  /** Partner tokens are backend-only by default; a generic OAuth2 credential may opt out. */
  backend_only: z.boolean().default(true),
  allowed_callers: z.array(credentialId).default([]),
  /** Narrower scopes callers may ask for (`?scope=`), exact strings; each set is its own grant. */
  allowed_scopes: z.array(z.string().regex(/^\S{1,256}$/, 'expected one scope without spaces')).max(256).default([]),
  /** How many scoped grants a credential may hold at once; past it a new scope set is answered 429. */
  max_scoped_grants: z.number().int().min(1).max(10_000).default(50),
  /** Kigo user sessions: their lifetime when the token is no JWT with exp, and how many this replica keeps in memory (an LRU in front of Redis). */
  user_sessions: z.strictObject({
    lifetime_seconds: z.number().int().min(10).max(86_400).default(1800),
    cached: z.number().int().min(1).max(100_000).default(1000)
  }).default({ lifetime_seconds: 1800, cached: 1000 }),
  /** Mint with the previous secret version when the provider rejects a version younger than this (0: never). */
  rollover_window_seconds: z.number().int().min(0).max(31 * 86_400).default(86_400)
}).superRefine((credential, ctx) => {
  const descriptor = descriptorOf(credential.provider)
  if (!descriptor.acceptsScope && credential.allowed_scopes.length > 0) {
    ctx.addIssue({ code: 'custom', path: ['allowed_scopes'], message: `${credential.provider} tokens take no scope` })
  }
  // A provider without documented hosts (generic OAuth2) is reached only through its token_url.
  if (descriptor.hosts === undefined && credential.token_url === undefined) {
    ctx.addIssue({ code: 'custom', path: ['token_url'], message: `required when provider is ${credential.provider}` })
  }
  if (descriptor.hosts !== undefined && credential.token_url !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['token_url'], message: 'only allowed when provider is oauth2 (use base_url to override a provider host)' })
  }
  if (descriptor.alwaysBackendOnly && !credential.backend_only) {
    ctx.addIssue({ code: 'custom', path: ['backend_only'], message: 'partner credentials are always backend-only' })
  }
})
export type CredentialConfig = z.infer<typeof CredentialSchema>

export const CredentialsFileSchema = z.strictObject({
  callers: z.array(CallerSchema).default([]),
  caller_jwt: CallerJwtSchema.optional(),
  credentials: z.array(CredentialSchema).default([])
}).superRefine((file, ctx) => {
  const callerIds = new Set<string>()
  file.callers.forEach((caller, index) => {
    if (callerIds.has(caller.id)) ctx.addIssue({ code: 'custom', path: ['callers', index, 'id'], message: `duplicate caller id "${caller.id}"` })
    callerIds.add(caller.id)
    if (caller.jwt_subject !== undefined && file.caller_jwt === undefined) {
      ctx.addIssue({ code: 'custom', path: ['callers', index, 'jwt_subject'], message: 'needs a caller_jwt section (issuer, audience, keys)' })
    }
  })
  const credentialIds = new Set<string>()
  file.credentials.forEach((credential, index) => {
    if (credentialIds.has(credential.id)) ctx.addIssue({ code: 'custom', path: ['credentials', index, 'id'], message: `duplicate credential id "${credential.id}"` })
    credentialIds.add(credential.id)
    credential.allowed_callers.forEach((callerId, callerIndex) => {
      if (!callerIds.has(callerId)) {
        ctx.addIssue({ code: 'custom', path: ['credentials', index, 'allowed_callers', callerIndex], message: `unknown caller "${callerId}"` })
      }
    })
  })
})
export type CredentialsFile = z.infer<typeof CredentialsFileSchema>

export interface Config {
  readonly port: number
  readonly host: string
  readonly logLevel: Env['LOG_LEVEL']
  readonly production: boolean
  readonly credentialsFile: string
  readonly usingExampleCredentials: boolean
  readonly callers: readonly Caller[]
  readonly callerJwt: CallerJwt | undefined
  readonly credentials: readonly CredentialConfig[]
  /** Where grants are shared: one of three Redis topologies, or undefined for the embedded memory store. */
  readonly redis: RedisConfig | undefined
  readonly vault: VaultConfig | undefined
  /** Embedded secret source; set only when Vault is not configured. */
  readonly secretsFile: string | undefined
  readonly usingExampleSecrets: boolean
  readonly encryptionKey: string | undefined
  readonly secretCheckIntervalSeconds: number
  /** Per-caller requests per minute on the /v1 API (RATE_LIMIT_PER_MINUTE). */
  readonly rateLimitPerMinute: number
}

export interface RedisAddress {
  readonly host: string
  readonly port: number
}

/** Settings every topology shares: key prefix, credentials (ACL user or requirepass) and TLS. */
interface RedisCommonConfig {
  readonly keyPrefix: string
  readonly username: string | undefined
  readonly password: string | undefined
  /** TLS to every Redis node (and sentinel); `ca` is the PEM of REDIS_CACERT, else the system CAs are trusted. */
  readonly tls: { readonly ca: string | undefined } | undefined
}

/** One node (REDIS_URL); the URL may carry credentials and `rediss://` for TLS. */
export interface RedisSingleConfig extends RedisCommonConfig {
  readonly topology: 'single'
  readonly url: string
}

/** A master found through Sentinel (REDIS_SENTINELS, REDIS_SENTINEL_MASTER, REDIS_SENTINEL_PASSWORD). */
export interface RedisSentinelConfig extends RedisCommonConfig {
  readonly topology: 'sentinel'
  readonly sentinels: readonly RedisAddress[]
  readonly masterName: string
  readonly sentinelPassword: string | undefined
}

/** Redis Cluster from its seed nodes (REDIS_CLUSTER_NODES); the rest of the cluster is discovered. */
export interface RedisClusterConfig extends RedisCommonConfig {
  readonly topology: 'cluster'
  readonly nodes: readonly RedisAddress[]
}

export type RedisConfig = RedisSingleConfig | RedisSentinelConfig | RedisClusterConfig

export interface VaultConfig {
  readonly addr: string
  readonly namespace: string | undefined
  readonly auth: Env['VAULT_AUTH']
  /** VAULT_TOKEN, or the content of VAULT_TOKEN_FILE at start. */
  readonly token: string | undefined
  /** VAULT_TOKEN_FILE: read again when Vault stops accepting the token (a Vault Agent sink rewrites it). */
  readonly tokenFile?: string | undefined
  /** PEM certificates of the CAs trusted for Vault's TLS (VAULT_CACERT, else VAULT_CAPATH); undefined: the system CAs. */
  readonly ca?: readonly string[] | undefined
  readonly roleId: string | undefined
  readonly secretId: string | undefined
  readonly approleMount: string
  readonly k8sRole: string | undefined
  readonly k8sTokenPath: string
  readonly k8sMount: string
  readonly timeoutMs: number
}

function formatPath (path: readonly PropertyKey[]): string {
  return path.reduce<string>((text, key) => typeof key === 'number' ? `${text}[${key}]` : text === '' ? String(key) : `${text}.${String(key)}`, '')
}

function zodProblems (error: z.ZodError, where: string): string[] {
  return error.issues.map(issue => {
    const path = formatPath(issue.path)
    return `${where}${path === '' ? '' : (where === '' ? '' : ': ') + path}: ${issue.message}`
  })
}

const pemCertificate = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g

/** The PEM certificates in `text`, each checked to parse; a broken one is a problem naming `where`. */
function pemCertificates (text: string, where: string, problems: string[]): string[] {
  const certificates = text.match(pemCertificate) ?? []
  for (const [index, pem] of certificates.entries()) {
    try {
      void new X509Certificate(pem)
    } catch {
      problems.push(`${where}: certificate ${index + 1} is not a valid PEM certificate`)
    }
  }
  return certificates
}

/**
 * The CAs for Vault's TLS, as the Vault CLI reads them: VAULT_CACERT (one PEM file, which may hold several
 * certificates) before VAULT_CAPATH (every PEM file in a directory). They replace the system CAs for Vault.
 */
function readVaultCa (env: Env, problems: string[]): string[] | undefined {
  if (env.VAULT_CACERT !== undefined) {
    let text: string
    try {
      text = readFileSync(env.VAULT_CACERT, 'utf8')
    } catch (err) {
      problems.push(`VAULT_CACERT: cannot read "${env.VAULT_CACERT}" (${(err as NodeJS.ErrnoException).code ?? 'error'}); expected a PEM file of the CA that signs Vault's certificate`)
      return undefined
    }
    const certificates = pemCertificates(text, `VAULT_CACERT "${env.VAULT_CACERT}"`, problems)
    if (certificates.length === 0) problems.push(`VAULT_CACERT: "${env.VAULT_CACERT}" holds no PEM certificate (-----BEGIN CERTIFICATE-----)`)
    return certificates
  }
  if (env.VAULT_CAPATH !== undefined) {
    let names: string[]
    try {
      names = readdirSync(env.VAULT_CAPATH).sort()
    } catch (err) {
      problems.push(`VAULT_CAPATH: cannot read the directory "${env.VAULT_CAPATH}" (${(err as NodeJS.ErrnoException).code ?? 'error'}); expected a directory of PEM CA files`)
      return undefined
    }
    const certificates: string[] = []
    for (const name of names) {
      const file = join(env.VAULT_CAPATH, name)
      try {
        if (!statSync(file).isFile()) continue
        certificates.push(...pemCertificates(readFileSync(file, 'utf8'), `VAULT_CAPATH "${file}"`, problems))
      } catch {
        // An unreadable entry (a dangling link) is skipped, as in a system CA directory.
      }
    }
    if (certificates.length === 0) problems.push(`VAULT_CAPATH: "${env.VAULT_CAPATH}" holds no PEM certificate`)
    return certificates
  }
  return undefined
}

/** Reads NAME or the file named by NAME_FILE. An unreadable file is reported here (and counts as given). */
function readSecretFileVariable (env: Record<string, string | undefined>, name: string, problems: string[]): string | null | undefined {
  const file = env[`${name}_FILE`]
  if (file === undefined || file === '') return env[name] === '' ? undefined : env[name]
  try {
    return readFileSync(file, 'utf8').trim()
  } catch (err) {
    problems.push(`${name}_FILE: cannot read "${file}" (${(err as NodeJS.ErrnoException).code ?? 'error'}); expected a readable file`)
    return null
  }
}

/** Parses a YAML or JSON credentials file; every problem is reported with its path in the file. */
export function parseCredentialsFile (text: string, fileName: string): CredentialsFile {
  let raw: unknown
  try {
    raw = extname(fileName) === '.json' ? JSON.parse(text) : parseYaml(text)
  } catch (err) {
    throw new ConfigError([`${fileName}: not valid ${extname(fileName) === '.json' ? 'JSON' : 'YAML'} (${(err as Error).message.split('\n')[0]})`])
  }
  const result = CredentialsFileSchema.safeParse(raw ?? {})
  if (!result.success) throw new ConfigError(zodProblems(result.error, fileName))
  return result.data
}

/** The credentials file: CREDENTIALS_FILE, else ./credentials.yaml, else (outside production) the example. */
function readCredentialsFile (env: Env, cwd: string, production: boolean, problems: string[]): { credentialsFile: string | undefined, usingExampleCredentials: boolean, file: CredentialsFile | undefined } {
  let credentialsFile = env.CREDENTIALS_FILE === undefined ? undefined : resolve(cwd, env.CREDENTIALS_FILE)
  let usingExampleCredentials = false
  if (credentialsFile === undefined) {
    const local = resolve(cwd, 'credentials.yaml')
    if (existsSync(local)) credentialsFile = local
    else if (production) problems.push('CREDENTIALS_FILE: required when NODE_ENV=production (no ./credentials.yaml found); expected a path to a YAML or JSON credentials file')
    else { credentialsFile = embeddedCredentialsFile; usingExampleCredentials = true }
  }
  let file: CredentialsFile | undefined
  if (credentialsFile !== undefined) {
    let text: string | undefined
    try {
      text = readFileSync(credentialsFile, 'utf8')
    } catch (err) {
      problems.push(`CREDENTIALS_FILE: cannot read "${credentialsFile}" (${(err as NodeJS.ErrnoException).code ?? 'error'}); expected a readable YAML or JSON file`)
    }
    if (text !== undefined) {
      try {
        file = parseCredentialsFile(text, credentialsFile)
      } catch (err) {
        if (err instanceof ConfigError) problems.push(...err.problems)
        else throw err
      }
    }
  }

  return { credentialsFile, usingExampleCredentials, file }
}

/** Vault's connection and auth settings; a missing auth input for the chosen method is a problem. */
function vaultConfig (env: Env, addr: string, environment: Record<string, string | undefined>, problems: string[]): VaultConfig {
  const token = readSecretFileVariable(environment, 'VAULT_TOKEN', problems)
  const roleId = readSecretFileVariable(environment, 'VAULT_ROLE_ID', problems)
  const secretId = readSecretFileVariable(environment, 'VAULT_SECRET_ID', problems)
  if (env.VAULT_AUTH === 'token' && token === undefined) problems.push('VAULT_TOKEN: required when VAULT_AUTH=token; expected a Vault token (or VAULT_TOKEN_FILE)')
  if (env.VAULT_AUTH === 'approle') {
    if (roleId === undefined) problems.push('VAULT_ROLE_ID: required when VAULT_AUTH=approle (or VAULT_ROLE_ID_FILE)')
    if (secretId === undefined) problems.push('VAULT_SECRET_ID: required when VAULT_AUTH=approle (or VAULT_SECRET_ID_FILE)')
  }
  if (env.VAULT_AUTH === 'kubernetes' && env.VAULT_K8S_ROLE === undefined) problems.push('VAULT_K8S_ROLE: required when VAULT_AUTH=kubernetes; expected the Vault role bound to this service account')
  const ca = readVaultCa(env, problems)
  return {
    addr: addr.replace(/\/+$/, ''),
    namespace: env.VAULT_NAMESPACE,
    auth: env.VAULT_AUTH,
    token: token ?? undefined,
    // As given (relative to the working directory), like the start-up read of VAULT_TOKEN_FILE above.
    tokenFile: env.VAULT_AUTH === 'token' ? env.VAULT_TOKEN_FILE : undefined,
    ca,
    roleId: roleId ?? undefined,
    secretId: secretId ?? undefined,
    approleMount: env.VAULT_APPROLE_MOUNT,
    k8sRole: env.VAULT_K8S_ROLE,
    k8sTokenPath: env.VAULT_K8S_TOKEN_PATH,
    k8sMount: env.VAULT_K8S_MOUNT,
    timeoutMs: env.VAULT_TIMEOUT_MS
  }
}

/**
 * Reads and validates the whole configuration once. Throws a ConfigError listing every problem found,
 * so an operator fixes them all in one go rather than one per restart.
 */
export function loadConfig (environment: Record<string, string | undefined> = process.env, cwd = process.cwd()): Config {
  const envResult = EnvSchema.safeParse(environment)
  if (!envResult.success) throw new ConfigError(zodProblems(envResult.error, ''))
  const env = envResult.data
  const production = env.NODE_ENV === 'production'
  const problems: string[] = []

  const { credentialsFile, usingExampleCredentials, file } = readCredentialsFile(env, cwd, production, problems)

  const redis = redisConfig(env, problems)
  const redisConfigured = redisTopologyVariables.some(name => env[name] !== undefined)
  if (production && !redisConfigured) {
    problems.push('REDIS_URL: required when NODE_ENV=production (or REDIS_SENTINELS with REDIS_SENTINEL_MASTER, or REDIS_CLUSTER_NODES); the embedded in-memory store is for a single local replica only')
  }
  if (production && env.VAULT_ADDR === undefined) {
    problems.push('VAULT_ADDR: required when NODE_ENV=production; the embedded file secret source is for local use only')
  }
  if (env.TOKEN_ENCRYPTION_KEY === undefined && (production || redisConfigured)) {
    problems.push('TOKEN_ENCRYPTION_KEY: required with Redis (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES) or NODE_ENV=production, so every replica shares the key; expected a base64 32-byte key (openssl rand -base64 32) or "vault:<mount>/<path>#<field>"')
  }
  if (env.TOKEN_ENCRYPTION_KEY !== undefined) {
    try {
      parseEncryptionKeySetting(env.TOKEN_ENCRYPTION_KEY)
    } catch (err) {
      if (!(err instanceof StoreError)) throw err
      problems.push(err.message)
    }
  }
  if (env.VAULT_ADDR === undefined && env.TOKEN_ENCRYPTION_KEY?.startsWith('vault:') === true) {
    problems.push('TOKEN_ENCRYPTION_KEY: a vault: key needs VAULT_ADDR')
  }

  const vault = env.VAULT_ADDR === undefined ? undefined : vaultConfig(env, env.VAULT_ADDR, environment, problems)

  let secretsFile: string | undefined
  let usingExampleSecrets = false
  if (vault === undefined) {
    if (env.SECRETS_FILE !== undefined) secretsFile = resolve(cwd, env.SECRETS_FILE)
    else if (!production) { secretsFile = embeddedSecretsFile; usingExampleSecrets = true }
  }

  if (problems.length > 0) throw new ConfigError(problems)
  if (file === undefined || credentialsFile === undefined) throw new ConfigError(['CREDENTIALS_FILE: could not be loaded'])

  return deepFreeze({
    port: env.PORT,
    host: env.HOST,
    logLevel: env.LOG_LEVEL,
    production,
    credentialsFile,
    usingExampleCredentials,
    callers: file.callers,
    callerJwt: file.caller_jwt,
    credentials: file.credentials,
    redis,
    vault,
    secretsFile,
    usingExampleSecrets,
    encryptionKey: env.TOKEN_ENCRYPTION_KEY,
    secretCheckIntervalSeconds: env.SECRET_CHECK_INTERVAL_SECONDS,
    rateLimitPerMinute: env.RATE_LIMIT_PER_MINUTE
  })
}

/** The variables that each choose a Redis topology; exactly one may be set. */
const redisTopologyVariables = ['REDIS_URL', 'REDIS_SENTINELS', 'REDIS_CLUSTER_NODES'] as const

/**
 * The same configuration with other credentials (frozen again). The embedded default uses it to point
 * the example credentials at the stand-ins it started, before the broker is built.
 */
export function withCredentials (config: Config, credentials: readonly CredentialConfig[]): Config {
  return deepFreeze({ ...config, credentials: [...credentials] })
}

/**
 * The Redis topology and its shared settings, or undefined (embedded store). Problems are added to
 * `problems`, one line each, naming the variable.
 */
function redisConfig (env: Env, problems: string[]): RedisConfig | undefined {
  const chosen = redisTopologyVariables.filter(name => env[name] !== undefined)
  if (chosen.length > 1) {
    problems.push(`${chosen.join(', ')}: set exactly one of REDIS_URL (one node), REDIS_SENTINELS (Sentinel) or REDIS_CLUSTER_NODES (Cluster)`)
  }
  if (env.REDIS_SENTINELS === undefined) {
    for (const name of ['REDIS_SENTINEL_MASTER', 'REDIS_SENTINEL_PASSWORD'] as const) {
      if (env[name] !== undefined) problems.push(`${name}: only used with REDIS_SENTINELS; expected REDIS_SENTINELS=host:port,… as well`)
    }
  }
  if (chosen.length === 0) {
    for (const name of ['REDIS_USERNAME', 'REDIS_PASSWORD', 'REDIS_TLS', 'REDIS_CACERT'] as const) {
      if (env[name] !== undefined) problems.push(`${name}: set without REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES; expected one of them as well`)
    }
    return undefined
  }

  const url = env.REDIS_URL === undefined ? undefined : new URL(env.REDIS_URL)
  // One place for each credential: a password in the URL and in REDIS_PASSWORD would leave the reader guessing which wins.
  if (url !== undefined && url.password !== '' && env.REDIS_PASSWORD !== undefined) problems.push('REDIS_PASSWORD: REDIS_URL already carries a password; set it in one place only')
  if (url !== undefined && url.username !== '' && env.REDIS_USERNAME !== undefined) problems.push('REDIS_USERNAME: REDIS_URL already carries a user name; set it in one place only')
  const tlsByUrl = url?.protocol === 'rediss:'
  if (tlsByUrl && env.REDIS_TLS === 'false') problems.push('REDIS_TLS: false contradicts the rediss:// REDIS_URL; expected true or unset')
  const tls = tlsByUrl || env.REDIS_TLS === 'true'
  let ca: string | undefined
  if (env.REDIS_CACERT !== undefined) {
    if (!tls) problems.push('REDIS_CACERT: only used with TLS; expected REDIS_TLS=true (or a rediss:// REDIS_URL) as well')
    try {
      ca = readFileSync(env.REDIS_CACERT, 'utf8')
      if (!ca.includes('-----BEGIN CERTIFICATE-----')) problems.push(`REDIS_CACERT: "${env.REDIS_CACERT}" holds no PEM certificate; expected a PEM file of the CA certificate(s)`)
    } catch (err) {
      problems.push(`REDIS_CACERT: cannot read "${env.REDIS_CACERT}" (${(err as NodeJS.ErrnoException).code ?? 'error'}); expected a readable PEM file`)
    }
  }
  const common = {
    keyPrefix: env.REDIS_KEY_PREFIX,
    username: env.REDIS_USERNAME,
    password: env.REDIS_PASSWORD,
    tls: tls ? { ca } : undefined
  }
  if (env.REDIS_URL !== undefined) return { topology: 'single', url: env.REDIS_URL, ...common }
  if (env.REDIS_SENTINELS !== undefined) {
    if (env.REDIS_SENTINEL_MASTER === undefined) problems.push('REDIS_SENTINEL_MASTER: required with REDIS_SENTINELS; expected the name the sentinels monitor the master under (sentinel monitor <name> …)')
    return {
      topology: 'sentinel',
      sentinels: parseAddressList('REDIS_SENTINELS', env.REDIS_SENTINELS, problems),
      masterName: env.REDIS_SENTINEL_MASTER ?? '',
      sentinelPassword: env.REDIS_SENTINEL_PASSWORD,
      ...common
    }
  }
  return { topology: 'cluster', nodes: parseAddressList('REDIS_CLUSTER_NODES', env.REDIS_CLUSTER_NODES ?? '', problems), ...common }
}

/** "host:port,host:port" (an IPv6 host in brackets: "[::1]:6379"), each entry checked. */
function parseAddressList (name: string, value: string, problems: string[]): RedisAddress[] {
  const addresses: RedisAddress[] = []
  const entries = value.split(',').map(entry => entry.trim()).filter(entry => entry !== '')
  if (entries.length === 0) problems.push(`${name}: expected a comma-separated list of host:port`)
  for (const entry of entries) {
    const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(entry)
    const port = Number(match?.[3])
    if (match === null || port < 1 || port > 65535) {
      problems.push(`${name}: "${entry}" is not host:port; expected a comma-separated list of host:port (port 1-65535)`)
      continue
    }
    addresses.push({ host: match[1] ?? match[2] as string, port })
  }
  return addresses
}

function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const child of Object.values(value)) deepFreeze(child)
  }
  return value
}
