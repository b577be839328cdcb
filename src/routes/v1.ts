import type { FastifyPluginAsync } from 'fastify'
import { assertAdmin, assertMayUse } from '../auth/policy.js'
import type { CredentialConfig } from '../config.js'
import { BrokerError } from '../errors.js'
import { adminRoutes } from './admin.js'
import { credentialRoutes } from './credentials.js'
import { proxyRoutes } from './proxy.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Admin callers only (checked right after authentication, before the rate limit counts). */
    admin?: boolean
  }
  interface FastifyRequest {
    /**
     * The credential named by the route's `:id`, resolved and authorized by routes/v1.ts before the
     * handler runs: unknown → 404, not allowed for this caller → 403 (admin routes: any credential).
     */
    credential: CredentialConfig | null
  }
}

/**
 * The /v1 API: what every route shares is set up once here (as fastify/demo's autohooks do). Order per
 * request: authenticate (401) → admin check (403) → per-caller rate limit (429) → schema validation (400,
 * 413, 415) → credential resolution (404) and policy (403) → the route's handler.
 */
export const v1Routes: FastifyPluginAsync = async (app) => {
  const credentialsById = new Map(app.config.credentials.map(credential => [credential.id, credential]))
  // JSON only: Fastify's default text/plain parser would turn a text body into a 400 instead of a 415.
  app.removeContentTypeParser('text/plain')
  app.decorateRequest('credential', null)

  app.addHook('onRequest', async (request) => {
    const caller = await app.authenticator.authenticate(request.headers.authorization)
    request.caller = caller
    if (request.routeOptions.config.admin === true) assertAdmin(caller)
  })
  // After authentication (it counts per caller), before the body is read.
  app.addHook('onRequest', app.callerRateLimit)

  app.addHook('preHandler', async (request) => {
    const id = (request.params as { id?: unknown } | undefined)?.id
    if (typeof id !== 'string') return
    const credential = credentialsById.get(id)
    if (credential === undefined) throw new BrokerError('CB_CREDENTIAL_NOT_FOUND', `no credential "${id}"`)
    if (request.routeOptions.config.admin !== true && request.caller !== null) assertMayUse(request.caller, credential)
    request.credential = credential
  })

  await app.register(credentialRoutes)
  await app.register(proxyRoutes)
  await app.register(adminRoutes, { prefix: '/admin' })
}
