/**
 * Example answers for the OpenAPI document (Swagger UI shows them instead of samples made from the schema
 * bounds). Typed against the route schemas (type-only imports: no import cycle with the route files), so
 * an example that stops matching its schema fails the typecheck. Values are made up; none is a real token.
 */
import type { z } from 'zod'
import { errorTable, type ErrorCode } from '../errors.js'
import type { AdminCredentialSchema } from './admin.js'
import type { UserSessionSchema, WebhookResultSchema } from './credentials.js'
import type { ReadinessSchema } from './health.js'
import type { CredentialStatusSchema, ProblemSchema, TokenSchema } from './schemas.js'

const requestId = '6f1c0c7e-3b1a-4d0e-9a51-2f4e8b0d7c11'

export const tokenExample = {
  access_token: 'eyJhbGciOiJSUzI1NiJ9.example-provider-token.c2lnbmF0dXJl',
  token_type: 'Bearer',
  expires_at: '2026-05-04T10:21:07.000Z',
  expires_in: 1742,
  scope: 'kivra.v1.tenant.example.*'
} satisfies z.output<typeof TokenSchema>

export const userSessionExample = {
  access_token: 'kigo-user-session-example-4f2a9c',
  token_type: 'Bearer',
  expires_at: '2026-05-04T10:51:07.000Z',
  expires_in: 3542
} satisfies z.output<typeof UserSessionSchema>

/** Request bodies. */
export const requestExamples = {
  userSession: { external_user_id: 'user-4711', user_email: 'ada@example.com', external_program_id: 'program-12' },
  rejection: { access_token: tokenExample.access_token },
  signature: { method: 'POST', path: '/v1/partner/donations?currency=GBP', body_sha256: '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08' },
  webhook: { headers: { 'x-signature': 't=1777889467,v1=5d41402abc4b2a76b9719d911017c592ae4f0b3c9e1a2b7f8d6c5e4a3b2c1d0e' }, body: '{"event":"donation.created","id":"evt_123"}', body_encoding: 'utf8' }
}

export const signatureExample = {
  headers: {
    'X-Partner-Key': 'sk_test_example',
    'X-Timestamp': '1777889467',
    'X-Signature': '5d41402abc4b2a76b9719d911017c592ae4f0b3c9e1a2b7f8d6c5e4a3b2c1d0e'
  }
}

export const webhookValidExample = { valid: true } satisfies z.output<typeof WebhookResultSchema>
export const webhookInvalidExample = { valid: false, reason: 'stale_timestamp' } satisfies z.output<typeof WebhookResultSchema>

const freshStatus = {
  id: 'kivra-sandbox',
  provider: 'kivra',
  environment: 'sandbox',
  kind: 'token',
  state: 'fresh',
  expires_at: '2026-05-04T10:21:07.000Z',
  obtained_at: '2026-05-04T09:51:07.000Z',
  next_refresh_at: '2026-05-04T10:13:37.000Z',
  secret_version: 3,
  secret_rolled_back: false,
  scoped_grants: 0,
  user_sessions_cached: 0,
  consecutive_failures: 0
} satisfies z.output<typeof CredentialStatusSchema>

const signingStatus = {
  id: 'sir-giving-sandbox',
  provider: 'sir-giving',
  environment: 'sandbox',
  kind: 'signing',
  state: 'static',
  secret_version: 1,
  consecutive_failures: 0
} satisfies z.output<typeof CredentialStatusSchema>

const failingStatus = {
  ...freshStatus,
  id: 'klavi-sandbox',
  provider: 'klavi',
  state: 'stale',
  expires_at: '2026-05-04T10:02:40.000Z',
  obtained_at: '2026-05-04T09:47:40.000Z',
  next_refresh_at: '2026-05-04T10:00:12.000Z',
  secret_version: 1,
  consecutive_failures: 2,
  last_error: { kind: 'transient', at: '2026-05-04T09:59:41.000Z' }
} satisfies z.output<typeof CredentialStatusSchema>

export const credentialListExample = { credentials: [freshStatus, signingStatus] } satisfies { credentials: Array<z.output<typeof CredentialStatusSchema>> }

const adminFields = { secret_path: 'secret/providers/kivra', allowed_callers: ['example-service'], backend_only: true }
export const adminListExample = {
  credentials: [
    { ...freshStatus, ...adminFields },
    { ...failingStatus, ...adminFields, secret_path: 'secret/providers/klavi' },
    { ...signingStatus, ...adminFields, secret_path: 'secret/providers/sir-giving' }
  ]
} satisfies { credentials: Array<z.output<typeof AdminCredentialSchema>> }

export const forcedRefreshExample = {
  id: 'kivra-sandbox',
  expires_at: '2026-05-04T10:21:07.000Z',
  obtained_at: '2026-05-04T09:51:07.000Z',
  fingerprint: 'q3Jk9vX0bT1w'
}

const checks = {
  config: { credentials: 4, callers: 2, example_credentials: false }
}
export const readinessExamples = {
  ready: {
    summary: 'Ready',
    value: { status: 'ready', checks: { store: { kind: 'redis', state: 'up', embedded: false }, secrets: { kind: 'vault', state: 'ok', embedded: false }, ...checks } }
  },
  degraded: {
    summary: 'Degraded: serving what it holds (200)',
    value: {
      status: 'degraded',
      reason: 'the secret source is degraded (Vault is sealed): serving what is held',
      checks: { store: { kind: 'redis', state: 'up', embedded: false }, secrets: { kind: 'vault', state: 'degraded', detail: 'Vault is sealed', embedded: false }, ...checks }
    }
  }
} satisfies Record<string, { summary: string, value: z.output<typeof ReadinessSchema> }>

export const notReadyExample = {
  status: 'not_ready',
  reason: 'cannot serve any credential: the secret source is unavailable (Vault unreachable (ECONNREFUSED)), no client secret has been read, and no grant is held or stored',
  checks: { store: { kind: 'redis', state: 'up', embedded: false }, secrets: { kind: 'vault', state: 'degraded', detail: 'Vault unreachable (ECONNREFUSED)', embedded: false }, ...checks }
} satisfies z.output<typeof ReadinessSchema>

export const metricsExample = [
  '# HELP credential_broker_readiness_state 2 ready, 1 degraded, 0 not ready',
  '# TYPE credential_broker_readiness_state gauge',
  'credential_broker_readiness_state 2',
  '# HELP credential_broker_token_requests_total Token requests by credential and result',
  '# TYPE credential_broker_token_requests_total counter',
  'credential_broker_token_requests_total{credential="kivra-sandbox",result="hit_local"} 18231',
  ''
].join('\n')

/** A realistic `detail` (and what else the answer carries) for every code the API answers with. */
const problemDetails: Record<ErrorCode, { detail: string, instance?: string, retryAfter?: number, extra?: Record<string, unknown> }> = {
  CB_BAD_REQUEST: { detail: 'invalid querystring', extra: { errors: [{ path: 'querystring.min_ttl', message: 'expected an integer number of seconds' }] } },
  CB_UNAUTHENTICATED: { detail: 'missing Authorization header (expected "Bearer <api key or JWT>")' },
  CB_FORBIDDEN: { detail: 'caller "billing" may not use credential "kivra-sandbox"' },
  CB_SCOPE_NOT_ALLOWED: { detail: 'credential "kivra-sandbox" does not allow the scope "kivra.v1.tenant.other.*" (allowed_scopes)' },
  CB_CREDENTIAL_NOT_FOUND: { detail: 'no credential "kivra-prod"', instance: '/v1/credentials/kivra-prod/token' },
  CB_ROUTE_NOT_FOUND: { detail: 'no route for GET at this path', instance: '/v1/credentials/kivra-sandbox/tokens' },
  CB_REQUEST_TIMEOUT: { detail: 'the request did not arrive in time', instance: '/' },
  CB_REQUEST_HEADERS_TOO_LARGE: { detail: 'the request headers are over the size limit', instance: '/' },
  CB_UNSUPPORTED_OPERATION: { detail: 'credential "sir-giving-sandbox" is a signing credential; it has no token (use /signatures)', instance: '/v1/credentials/sir-giving-sandbox/token' },
  CB_PAYLOAD_TOO_LARGE: { detail: 'Request body is too large' },
  CB_UNSUPPORTED_MEDIA_TYPE: { detail: 'Unsupported Media Type: text/plain' },
  CB_MIN_TTL_UNSATISFIABLE: { detail: 'min_ttl 3600 s cannot be met: the newest grant of "kivra-sandbox" lives 1800 s in all', extra: { lifetime_seconds: 1800 } },
  CB_RATE_LIMITED: { detail: 'caller "example-service" exceeded 60000 requests per minute; retry in 12 seconds', retryAfter: 12 },
  CB_SCOPED_GRANT_LIMIT: { detail: 'credential "kivra-sandbox" already holds 16 scoped grants (max_scoped_grants)', retryAfter: 60 },
  CB_INTERNAL: { detail: 'an internal error occurred; see the broker log for this request id' },
  CB_PROVIDER_REJECTED_CREDENTIALS: { detail: 'the provider rejected the client credentials of "kivra-sandbox" (provider code 40104); the secret needs rotating', retryAfter: 30, extra: { provider_code: '40104' } },
  CB_PROVIDER_BAD_RESPONSE: { detail: 'the provider of "kivra-sandbox" answered something the broker cannot use, and no grant with enough life is held', retryAfter: 2 },
  CB_USER_SESSION_REFUSED: { detail: 'the provider refused the user session of "kigo-sandbox" (HTTP 400)', instance: '/v1/credentials/kigo-sandbox/user-sessions', extra: { provider_status: 400 } },
  CB_PROVIDER_UNAVAILABLE: { detail: 'the provider of "kivra-sandbox" is unavailable and no grant with enough life is held', retryAfter: 2 },
  CB_REFRESH_TIMEOUT: { detail: 'a refresh of credential "kivra-sandbox" is running and did not finish in time', retryAfter: 1 },
  CB_SECRET_UNAVAILABLE: { detail: 'the secret of credential "kivra-sandbox" could not be read (unavailable)', retryAfter: 5 },
  CB_NOT_READY: { detail: 'the broker is shutting down', retryAfter: 1 },
  CB_UPSTREAM_UNAVAILABLE: { detail: 'the provider API could not be reached', instance: '/v1/credentials/kivra-sandbox/proxy/v1/tenant/abc/content' },
  CB_UPSTREAM_TIMEOUT: { detail: 'the provider API did not answer within 10000 ms', instance: '/v1/credentials/kivra-sandbox/proxy/v1/tenant/abc/content' },
  CB_CALLER_KEYS_UNAVAILABLE: { detail: 'the caller key set (JWKS) could not be fetched; retry shortly', retryAfter: 5 }
}

/** One named example per code with this HTTP status, as the problem handler (src/problem.ts) would answer it. */
export function problemExamples (status: number): Record<string, { summary: string, value: z.output<typeof ProblemSchema> }> {
  const codes = (Object.keys(errorTable) as ErrorCode[]).filter(code => errorTable[code].status === status)
  return Object.fromEntries(codes.map(code => {
    const { detail, instance, retryAfter, extra } = problemDetails[code]
    return [code, {
      summary: errorTable[code].title,
      value: {
        type: `urn:credential-broker:problem:${code.slice(3).toLowerCase().replaceAll('_', '-')}`,
        title: errorTable[code].title,
        status,
        detail,
        code,
        instance: instance ?? '/v1/credentials/kivra-sandbox/token',
        request_id: requestId,
        ...(retryAfter === undefined ? {} : { retry_after: retryAfter }),
        ...extra
      }
    }]
  }))
}
