/** The credentials file (YAML or JSON): callers, caller JWT settings and credentials, validated with zod. */
import { extname } from 'node:path'
import { z } from 'zod'
import { parse as parseYaml } from 'yaml'
import { ConfigError } from '../errors.js'
import { descriptorOf, providerKinds } from '../providers/catalog.js'
import { isSecretPath } from '../secrets/secret-path.js'
import { zodProblems } from './common.js'
import { providerUrl, requireHttpsUnlessLoopback } from './provider-url.js'
import { proxyCredentialFields, proxyFieldProblems } from './proxy.js'

const credentialId = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'expected 1-64 characters of a-z 0-9 . _ - starting with a letter or digit')

export const CallerSchema = z.strictObject({
  id: credentialId,
  // Hex is case-insensitive; held lowercase, as the key's digest is computed, so equal hashes compare equal.
  api_key_sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'expected 64 hex characters (sha256 of the API key)').transform(hex => hex.toLowerCase()).optional(),
  jwt_subject: z.string().min(1).optional(),
  admin: z.boolean().default(false),
  /** Front-end callers never receive backend-only credentials (all partner tokens). */
  frontend: z.boolean().default(false),
  /** This caller's own per-minute limit instead of RATE_LIMIT_PER_MINUTE. */
  rate_limit_per_minute: z.number().int('expected a whole number of requests per minute').min(1, 'expected at least 1').max(1_000_000_000, 'expected at most 1000000000').optional()
}).refine(caller => caller.api_key_sha256 !== undefined || caller.jwt_subject !== undefined, {
  message: 'expected api_key_sha256 or jwt_subject (a caller needs a way to authenticate)'
})
export type Caller = z.infer<typeof CallerSchema>

export const CallerJwtSchema = z.strictObject({
  issuer: z.string().min(1),
  audience: z.string().min(1),
  jwks_url: providerUrl.optional(),
  jwks_file: z.string().min(1).optional(),
  algorithms: z.array(z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']))
    .min(1).default(['RS256', 'ES256']),
  clock_tolerance_seconds: z.number().int().min(0).max(300).default(30)
}).refine(jwt => (jwt.jwks_url === undefined) !== (jwt.jwks_file === undefined), {
  message: 'expected exactly one of jwks_url or jwks_file'
  // Keys from a plain-http JWKS make anyone on the path any caller, admin included: no lab switch here.
}).superRefine((jwt, ctx) => { requireHttpsUnlessLoopback(ctx, ['jwks_url'], jwt.jwks_url) })
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

/** The credential fields that hold a provider URL: each gets `providerUrl` and the https rule. */
export const providerUrlFields = ['base_url', 'token_url', 'api_base_url'] as const

export const CredentialSchema = z.strictObject({
  id: credentialId,
  provider: z.enum(providerKinds),
  environment: z.enum(['sandbox', 'production']),
  secret: z.string().refine(isSecretPath, 'expected "<mount>/<path>" (KV v2), "<mount>:<path>" for a mount whose name has a slash (e.g. "kv/platform:providers/kivra"), or a SECRETS_FILE key of either form'),
  base_url: providerUrl.optional(),
  token_url: providerUrl.optional(),
  /** A lab switch: plain http to a non-loopback host for this credential's provider URLs (never the JWKS). */
  allow_insecure_http: z.boolean().default(false),
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
  rollover_window_seconds: z.number().int().min(0).max(31 * 86_400).default(86_400),
  /** The proxy route's settings (src/config/proxy.ts). */
  ...proxyCredentialFields
}).superRefine((credential, ctx) => {
  // Every provider URL field, those added later included (read by name, so a field this schema lacks is skipped).
  for (const field of providerUrlFields) {
    requireHttpsUnlessLoopback(ctx, [field], (credential as Record<string, unknown>)[field], credential.allow_insecure_http)
  }
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
  for (const problem of proxyFieldProblems(credential)) ctx.addIssue({ code: 'custom', ...problem })
})
export type CredentialConfig = z.infer<typeof CredentialSchema>

export const CredentialsFileSchema = z.strictObject({
  callers: z.array(CallerSchema).default([]),
  caller_jwt: CallerJwtSchema.optional(),
  credentials: z.array(CredentialSchema).default([])
}).superRefine((file, ctx) => {
  // The first caller with a key wins at authentication: a second caller with the same key (or JWT subject)
  // would silently be the first one, an admin perhaps. Both entries are named so the operator sees which.
  reportDuplicates(ctx, file.callers, 'api_key_sha256', 'the same API key (api_key_sha256)')
  reportDuplicates(ctx, file.callers, 'jwt_subject', 'the same jwt_subject')
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

/** One issue per caller that repeats an earlier caller's `field`, naming both entries. */
function reportDuplicates (ctx: z.RefinementCtx, callers: readonly Caller[], field: 'api_key_sha256' | 'jwt_subject', what: string): void {
  const firstIndex = new Map<string, number>()
  callers.forEach((caller, index) => {
    const value = caller[field]
    if (value === undefined) return
    const first = firstIndex.get(value)
    if (first === undefined) { firstIndex.set(value, index); return }
    ctx.addIssue({ code: 'custom', path: ['callers', index, field], message: `callers[${first}] ("${callers[first]?.id ?? ''}") and callers[${index}] ("${caller.id}") have ${what}; each caller needs its own` })
  })
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
