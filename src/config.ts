import { X509Certificate } from 'node:crypto'
import { readFileSync, readdirSync, existsSync, statSync } from 'node:fs'
import { resolve, dirname, extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import { parse as parseYaml } from 'yaml'

/** Where the checked-in example credentials and secrets live (used only in embedded mode). */
export const embeddedDir = join(dirname(fileURLToPath(import.meta.url)), 'embedded')
export const embeddedCredentialsFile = join(embeddedDir, 'credentials.example.yaml')
export const embeddedSecretsFile = join(embeddedDir, 'secrets.example.json')

const providerKinds = ['kivra', 'kigo', 'klavi', 'sir-giving', 'oauth2'] as const
export type ProviderKind = typeof providerKinds[number]

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
  allowed_callers: z.array(credentialId).default([])
}).superRefine((credential, ctx) => {
  if (credential.provider === 'oauth2' && credential.token_url === undefined) {
    ctx.addIssue({ code: 'custom', path: ['token_url'], message: 'required when provider is oauth2' })
  }
  if (credential.provider !== 'oauth2' && credential.token_url !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['token_url'], message: 'only allowed when provider is oauth2 (use base_url to override a provider host)' })
  }
  if (credential.provider !== 'oauth2' && !credential.backend_only) {
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
  readonly env: Env
  readonly port: number
  readonly host: string
  readonly logLevel: Env['LOG_LEVEL']
  readonly production: boolean
  readonly credentialsFile: string
  readonly usingExampleCredentials: boolean
  readonly callers: readonly Caller[]
  readonly callerJwt: CallerJwt | undefined
  readonly credentials: readonly CredentialConfig[]
  readonly redis: { readonly url: string, readonly keyPrefix: string } | undefined
  readonly vault: VaultConfig | undefined
  /** Embedded secret source; set only when Vault is not configured. */
  readonly secretsFile: string | undefined
  readonly usingExampleSecrets: boolean
  readonly encryptionKey: string | undefined
  readonly secretCheckIntervalSeconds: number
  /** Per-caller requests per minute on the /v1 API (RATE_LIMIT_PER_MINUTE). */
  readonly rateLimitPerMinute: number
}

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

/** One problem per line, each naming where it is, what is wrong and what is expected. */
export class ConfigError extends Error {
  readonly problems: readonly string[]
  constructor (problems: string[]) {
    super(`invalid configuration:\n${problems.map(p => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
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

/**
 * A secret reference: "<mount>/<path>" (split at the first slash), or "<mount>:<path>" when the KV mount's
 * own name has a slash ("kv/platform:providers/kivra"). A reference with a colon is always the second form.
 */
export function isSecretPath (path: string): boolean {
  if (/\s/.test(path)) return false
  const colon = path.indexOf(':')
  if (colon === -1) return /^[^/]+\/.+$/.test(path)
  const mount = path.slice(0, colon)
  const key = path.slice(colon + 1)
  return mount !== '' && !mount.startsWith('/') && !mount.endsWith('/') && !mount.includes('//') && key !== '' && !key.startsWith('/') && !key.includes(':')
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

  // Credentials file: explicit, else ./credentials.yaml, else (outside production) the example.
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

  if (production && env.REDIS_URL === undefined) {
    problems.push('REDIS_URL: required when NODE_ENV=production; the embedded in-memory store is for a single local replica only')
  }
  if (production && env.VAULT_ADDR === undefined) {
    problems.push('VAULT_ADDR: required when NODE_ENV=production; the embedded file secret source is for local use only')
  }
  if (env.TOKEN_ENCRYPTION_KEY === undefined && (production || env.REDIS_URL !== undefined)) {
    problems.push('TOKEN_ENCRYPTION_KEY: required with REDIS_URL or NODE_ENV=production, so every replica shares the key; expected a base64 32-byte key (openssl rand -base64 32) or "vault:<mount>/<path>#<field>"')
  }
  if (env.TOKEN_ENCRYPTION_KEY !== undefined) problems.push(...checkEncryptionKeySpec(env.TOKEN_ENCRYPTION_KEY))
  if (env.VAULT_ADDR === undefined && env.TOKEN_ENCRYPTION_KEY?.startsWith('vault:') === true) {
    problems.push('TOKEN_ENCRYPTION_KEY: a vault: key needs VAULT_ADDR')
  }

  let vault: VaultConfig | undefined
  if (env.VAULT_ADDR !== undefined) {
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
    vault = {
      addr: env.VAULT_ADDR.replace(/\/+$/, ''),
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

  let secretsFile: string | undefined
  let usingExampleSecrets = false
  if (vault === undefined) {
    if (env.SECRETS_FILE !== undefined) secretsFile = resolve(cwd, env.SECRETS_FILE)
    else if (!production) { secretsFile = embeddedSecretsFile; usingExampleSecrets = true }
  }

  if (problems.length > 0) throw new ConfigError(problems)
  if (file === undefined || credentialsFile === undefined) throw new ConfigError(['CREDENTIALS_FILE: could not be loaded'])

  return deepFreeze({
    // Secrets stay out of `env`: they live only where they are used (vault, encryptionKey).
    env: { ...env, VAULT_TOKEN: undefined, VAULT_SECRET_ID: undefined, VAULT_ROLE_ID: undefined, TOKEN_ENCRYPTION_KEY: undefined },
    port: env.PORT,
    host: env.HOST,
    logLevel: env.LOG_LEVEL,
    production,
    credentialsFile,
    usingExampleCredentials,
    callers: file.callers,
    callerJwt: file.caller_jwt,
    credentials: file.credentials,
    redis: env.REDIS_URL === undefined ? undefined : { url: env.REDIS_URL, keyPrefix: env.REDIS_KEY_PREFIX },
    vault,
    secretsFile,
    usingExampleSecrets,
    encryptionKey: env.TOKEN_ENCRYPTION_KEY,
    secretCheckIntervalSeconds: env.SECRET_CHECK_INTERVAL_SECONDS,
    rateLimitPerMinute: env.RATE_LIMIT_PER_MINUTE
  })
}

/**
 * The same configuration with other credentials (frozen again). The embedded default uses it to point
 * the example credentials at the stand-ins it started, before the broker is built.
 */
export function withCredentials (config: Config, credentials: readonly CredentialConfig[]): Config {
  return deepFreeze({ ...config, credentials: [...credentials] })
}

/**
 * TOKEN_ENCRYPTION_KEY is either "vault:<mount>/<path>#<field>" or a comma-separated list of keys, each
 * "<base64>" or "<key id>:<base64>"; the first encrypts, all decrypt (rotation without downtime).
 */
function checkEncryptionKeySpec (spec: string): string[] {
  if (spec.startsWith('vault:')) {
    const match = /^vault:([^#]+)#\S+$/.exec(spec)
    return match?.[1] !== undefined && isSecretPath(match[1]) ? [] : ['TOKEN_ENCRYPTION_KEY: expected "vault:<mount>/<path>#<field>" (or "vault:<mount>:<path>#<field>" for a mount with a slash)']
  }
  const problems: string[] = []
  spec.split(',').forEach((entry, index) => {
    const separator = entry.indexOf(':')
    const material = separator === -1 ? entry.trim() : entry.slice(separator + 1).trim()
    const bytes = /^[A-Za-z0-9+/_-]+={0,2}$/.test(material) ? Buffer.from(material, 'base64') : Buffer.alloc(0)
    if (bytes.length !== 32) problems.push(`TOKEN_ENCRYPTION_KEY: key ${index + 1} is not 32 bytes of base64 (got ${bytes.length} bytes); expected the output of "openssl rand -base64 32"`)
  })
  return problems
}

function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const child of Object.values(value)) deepFreeze(child)
  }
  return value
}
