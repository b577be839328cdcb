import { readFileSync, existsSync } from 'node:fs'
import { resolve, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import { ConfigError, StoreError } from './errors.js'
import { parseEncryptionKeySetting } from './store/encryption.js'
import { emptyToUndefined, httpUrl, zodProblems } from './config/common.js'
import { parseCredentialsFile, type Caller, type CallerJwt, type CredentialConfig, type CredentialsFile } from './config/credentials-file.js'
import { redisConfig, redisTopologyVariables, type RedisConfig } from './config/redis.js'
import { vaultConfig, type VaultConfig } from './config/vault.js'
import { parseSecretsFile } from './secrets/secrets-file.js'

export { CallerJwtSchema, CallerSchema, CredentialSchema, CredentialsFileSchema, RefreshPolicySchema, parseCredentialsFile } from './config/credentials-file.js'
export type { Caller, CallerJwt, CredentialConfig, CredentialsFile, RefreshPolicy } from './config/credentials-file.js'
export type { RedisAddress, RedisClusterConfig, RedisConfig, RedisSentinelConfig, RedisSingleConfig } from './config/redis.js'
export type { VaultConfig } from './config/vault.js'

/** Where the checked-in example credentials and secrets live (used only in embedded mode). */
export const embeddedDir = join(dirname(fileURLToPath(import.meta.url)), 'embedded')
export const embeddedCredentialsFile = join(embeddedDir, 'credentials.example.yaml')
export const embeddedSecretsFile = join(embeddedDir, 'secrets.example.json')


const optionalString = z.preprocess(emptyToUndefined, z.string().optional())

/**
 * 120,000 a minute = 2,000 requests a second per caller per window: a single internal service asking
 * "hundreds of times a second" (issue 13: ~1,000 req/s) stays well inside it. Callers may have their own
 * (callers[].rate_limit_per_minute).
 */
export const defaultRateLimitPerMinute = 120_000

export const EnvSchema = z.object({
  PORT: z.preprocess(emptyToUndefined, z.coerce.number({ error: 'expected a port number' })
    .int('expected a whole port number').min(0, 'expected 0-65535').max(65535, 'expected 0-65535').default(8080)),
  HOST: z.preprocess(emptyToUndefined, z.string().default('0.0.0.0')),
  LOG_LEVEL: z.preprocess(emptyToUndefined, z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info')),
  /** `pretty`: coloured lines through pino-pretty (a dev dependency), for a person reading a terminal. */
  LOG_FORMAT: z.preprocess(emptyToUndefined, z.enum(['json', 'pretty']).default('json')),
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
    .int('expected a whole number of requests per minute').min(1, 'expected at least 1').max(1_000_000_000, 'expected at most 1000000000').default(defaultRateLimitPerMinute)),
  TOKEN_ENCRYPTION_KEY: optionalString,
  /** Open HTTP connections this process accepts at once; past it new connections are closed unanswered. */
  MAX_CONNECTIONS: z.preprocess(emptyToUndefined, z.coerce.number({ error: 'expected a number of connections' })
    .int('expected a whole number of connections').min(1, 'expected at least 1').max(1_000_000, 'expected at most 1000000').default(10_000)),
  NODE_ENV: optionalString
})
export type Env = z.infer<typeof EnvSchema>

export interface Config {
  readonly port: number
  readonly host: string
  readonly logLevel: Env['LOG_LEVEL']
  /** LOG_FORMAT: JSON lines (default) or pino-pretty's for development. */
  readonly logFormat: Env['LOG_FORMAT']
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
  /** Cap on open HTTP connections (MAX_CONNECTIONS). */
  readonly maxConnections: number
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


/**
 * The secrets file, read once at start so a missing or malformed one is a configuration error (one line
 * per problem, exit 78) rather than a crash when the secret source starts. Later re-reads (rotation) that
 * fail only degrade readiness: the secrets already held keep serving.
 */
function secretsFileProblems (file: string): string[] {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    return [`SECRETS_FILE: cannot read "${file}" (${(err as NodeJS.ErrnoException).code ?? 'error'}); expected a readable JSON file { "<secret path>": { field: value } }`]
  }
  const parsed = parseSecretsFile(text, `SECRETS_FILE: "${file}"`)
  return 'problems' in parsed ? parsed.problems : []
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
    const refused = env.SECRETS_FILE === undefined ? '' : ' (SECRETS_FILE is set: it is refused in production)'
    problems.push(`VAULT_ADDR: required when NODE_ENV=production; the embedded file secret source is for local use only${refused}`)
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
    if (secretsFile !== undefined) problems.push(...secretsFileProblems(secretsFile))
  }

  if (problems.length > 0) throw new ConfigError(problems)
  if (file === undefined || credentialsFile === undefined) throw new ConfigError(['CREDENTIALS_FILE: could not be loaded'])

  return deepFreeze({
    port: env.PORT,
    host: env.HOST,
    logLevel: env.LOG_LEVEL,
    logFormat: env.LOG_FORMAT,
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
    rateLimitPerMinute: env.RATE_LIMIT_PER_MINUTE,
    maxConnections: env.MAX_CONNECTIONS
  })
}


/**
 * The same configuration with other credentials (frozen again). The embedded default uses it to point
 * the example credentials at the stand-ins it started, before the broker is built.
 */
export function withCredentials (config: Config, credentials: readonly CredentialConfig[]): Config {
  return deepFreeze({ ...config, credentials: [...credentials] })
}

function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const child of Object.values(value)) deepFreeze(child)
  }
  return value
}
