/**
 * The OpenAPI metadata of every route, by route file: operation id, summary, access, and the examples and
 * extra headers of its answers (docs.ts's `operation()`). The route files spread these into their schemas,
 * so this file, not the route handlers, changes when the documentation does.
 */
import { operation } from './docs.js'
import {
  adminListExample, credentialListExample, forcedRefreshExample, metricsExample, notReadyExample, readinessExamples,
  requestExamples, signatureExample, tokenExample, userSessionExample, webhookInvalidExample, webhookValidExample
} from './examples.js'

/** Answers that carry a token: never cached (RFC 6749 §5.1). */
const tokenHeaders = ['cache-control', 'pragma'] as const

export const healthDocs = {
  liveness: operation({
    id: 'getLiveness', summary: 'Liveness: the process is up', tag: 'operations', access: 'open',
    answers: { 200: { description: 'The process is up', example: { status: 'ok' }, headers: ['cache-control'] } }
  }),
  readiness: operation({
    id: 'getReadiness',
    summary: 'Readiness: 200 when ready or degraded (serving what it holds), 503 when it can serve nothing',
    description: 'Not ready while starting or shutting down, and while the secret source is unavailable, no client secret has been read and no grant is held or stored (README: Readiness).',
    tag: 'operations',
    access: 'open',
    answers: {
      200: { description: 'Ready, or degraded: serving', examples: readinessExamples, headers: ['cache-control'] },
      503: { description: 'Not ready: the replica can serve nothing; take it out of the load balancer', example: notReadyExample, headers: ['cache-control'] }
    }
  }),
  metrics: operation({
    id: 'getMetrics', summary: 'Prometheus metrics (text exposition format)', tag: 'operations', access: 'open',
    answers: { 200: { description: 'Every metric of this replica', mediaType: 'text/plain', schema: { type: 'string' }, example: metricsExample } }
  })
}

export const credentialDocs = {
  getToken: operation({
    id: 'getToken', summary: 'A token with at least min_ttl seconds left', tag: 'tokens', access: 'caller',
    answers: { 200: { description: 'The token', example: tokenExample, headers: tokenHeaders } }
  }),
  createUserSession: operation({
    id: 'createUserSession', summary: 'A Kigo user-level session, made with the credential\'s partner token and cached per external_user_id', tag: 'tokens', access: 'caller',
    requestExample: requestExamples.userSession,
    answers: { 200: { description: 'The user session', example: userSessionExample, headers: tokenHeaders } }
  }),
  reportTokenRejection: operation({
    id: 'reportTokenRejection', summary: 'Report that the provider rejected a token: one deduplicated refresh, answers the new token', tag: 'tokens', access: 'caller',
    requestExample: requestExamples.rejection,
    answers: { 200: { description: 'The new token', example: tokenExample, headers: tokenHeaders } }
  }),
  signRequest: operation({
    id: 'signRequest', summary: 'SIR Giving signature headers for one request (fresh timestamp each call)', tag: 'signing', access: 'caller',
    requestExample: requestExamples.signature,
    answers: { 200: { description: 'Headers to send with the request', example: signatureExample, headers: ['cache-control'] } }
  }),
  verifyWebhook: operation({
    id: 'verifyWebhook', summary: 'Verify a provider webhook signature with the secret the broker holds', tag: 'webhooks', access: 'caller',
    requestExample: requestExamples.webhook,
    answers: {
      200: {
        description: 'Whether the signature is valid (an invalid one is a 200 with the reason)',
        examples: { valid: { summary: 'Valid signature', value: webhookValidExample }, invalid: { summary: 'Timestamp outside the tolerance', value: webhookInvalidExample } }
      }
    }
  }),
  listCredentials: operation({
    id: 'listCredentials', summary: 'The credentials this caller may use, with their status (never secrets)', tag: 'tokens', access: 'caller',
    answers: { 200: { description: 'The caller\'s credentials', example: credentialListExample } }
  })
}

export const adminDocs = {
  listAllCredentials: operation({
    id: 'listAllCredentials', summary: 'Every credential with its state, schedule and last error', tag: 'admin', access: 'admin',
    answers: { 200: { description: 'Every credential', example: adminListExample } }
  }),
  refreshCredential: operation({
    id: 'refreshCredential', summary: 'Refresh a credential now (after a rotation, or to test the provider)', tag: 'admin', access: 'admin',
    answers: { 200: { description: 'The new grant (its fingerprint, never the token)', example: forcedRefreshExample } }
  })
}
