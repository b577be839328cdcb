import { z } from 'zod'
import { errorTable, type ErrorCode } from '../errors.js'
import { providerKinds } from '../providers/catalog.js'
import { credentialStates, type CredentialStatus } from '../broker/types.js'
import { problemExamples } from './examples.js'

/** RFC 9457 problem document, as every error of the API is answered. */
export const ProblemSchema = z.looseObject({
  type: z.string(),
  title: z.string(),
  status: z.number().int().min(400).max(599),
  detail: z.string(),
  code: z.enum(Object.keys(errorTable) as [ErrorCode, ...ErrorCode[]]),
  instance: z.string(),
  request_id: z.string(),
  retry_after: z.number().int().min(1).optional(),
  errors: z.array(z.object({ path: z.string(), message: z.string() })).optional()
}).meta({ id: 'Problem', description: 'application/problem+json (RFC 9457) with a stable `code`' })

export const problemMediaType = 'application/problem+json'

/** A problem response as OpenAPI sees it: its media type, which codes this status carries, an example of each. */
export interface ProblemResponse {
  description: string
  content: { [problemMediaType]: { schema: typeof ProblemSchema, examples: ReturnType<typeof problemExamples> } }
}

function problemDescription (status: number): string {
  const entries = Object.entries(errorTable).filter(([, entry]) => entry.status === status)
  const codes = entries.map(([code, entry]) => `\`${code}\` (${entry.title})`).join('; ')
  const retry = status === 429 || status === 503 ? ' A `Retry-After` header says when to try again.' : ''
  return `Problem: ${codes}.${retry}`
}

/**
 * Response map entries for the error statuses a route can answer, as application/problem+json. Fastify
 * picks the serializer by the reply's media type, which the problem handler sets (src/problem.ts).
 */
export function problems (...statuses: number[]): Record<number, ProblemResponse> {
  return Object.fromEntries(statuses.map(status => [status, { description: problemDescription(status), content: { [problemMediaType]: { schema: ProblemSchema, examples: problemExamples(status) } } }]))
}

export const CredentialIdParams = z.object({
  id: z.string().min(1).max(64).regex(/^[a-z0-9][a-z0-9._-]*$/, 'expected a credential id (a-z 0-9 . _ -)')
})

/**
 * Digits only: a plain number coercion would read "" as 0 (a token about to expire instead of the default
 * 60 s), and "0x10" or "1e3" as numbers a caller most likely did not mean.
 */
export const MinTtl = z.preprocess(
  (value: unknown) => typeof value === 'string' && /^\d{1,9}$/.test(value) ? Number(value) : value,
  z.number({ error: 'expected an integer number of seconds' })
    .int('expected an integer number of seconds').min(0, 'expected 0 or more seconds').max(86_400, 'expected at most 86400 seconds')
).optional()
  .describe('the token must stay valid for at least this many seconds (0 to the credential lifetime); default min(60, a quarter of the lifetime)')

export const TokenSchema = z.object({
  access_token: z.string(),
  token_type: z.string(),
  expires_at: z.iso.datetime(),
  expires_in: z.number().int().min(0).describe('seconds left at the time of the answer'),
  scope: z.string().optional()
}).meta({ id: 'Token' })

export const CredentialStatusSchema = z.object({
  id: z.string(),
  provider: z.enum(providerKinds),
  environment: z.enum(['sandbox', 'production']),
  kind: z.enum(['token', 'signing']),
  state: z.enum(credentialStates),
  expires_at: z.iso.datetime().optional(),
  obtained_at: z.iso.datetime().optional(),
  next_refresh_at: z.iso.datetime().optional(),
  secret_version: z.number().int().min(1).optional(),
  secret_rolled_back: z.boolean().optional().describe('the held grant was minted with the previous secret version: the provider rejected the current one (secret rollover)'),
  scoped_grants: z.number().int().min(0).optional().describe('scoped grants this replica holds for the credential'),
  user_sessions_cached: z.number().int().min(0).optional().describe('Kigo user sessions this replica keeps in memory (the rest are in Redis)'),
  consecutive_failures: z.number().int().min(0),
  last_error: z.object({ kind: z.string(), provider_code: z.string().optional(), at: z.iso.datetime() }).optional()
}).meta({ id: 'CredentialStatus' })

/** A credential's status as the API shows it. */
export function toStatusBody (status: CredentialStatus, kind: 'token' | 'signing'): z.infer<typeof CredentialStatusSchema> {
  const iso = (ms: number | undefined): string | undefined => ms === undefined ? undefined : new Date(ms).toISOString()
  return {
    id: status.id,
    provider: status.provider,
    environment: status.environment,
    kind,
    state: status.state,
    expires_at: iso(status.expiresAt),
    obtained_at: iso(status.obtainedAt),
    next_refresh_at: iso(status.nextRefreshAt),
    secret_version: status.secretVersion,
    secret_rolled_back: status.secretRolledBack,
    scoped_grants: status.scopedGrants,
    user_sessions_cached: status.userSessionsCached,
    consecutive_failures: status.consecutiveFailures,
    last_error: status.lastError === undefined ? undefined : { kind: status.lastError.kind, provider_code: status.lastError.providerCode, at: new Date(status.lastError.at).toISOString() }
  }
}
