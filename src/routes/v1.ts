import type { FastifyPluginAsync, FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestHookHandler } from 'fastify'
import { assertAdmin, assertMayUse } from '../auth/policy.js'
import type { Caller, CredentialConfig } from '../config.js'
import { BrokerError } from '../errors.js'
import { adminRoutes } from './admin.js'
import { credentialRoutes } from './credentials.js'
import { proxyRoutes } from './proxy.js'
import { readHeaders } from './raw-headers.js'
import { tokenFastLane } from './token-fast-lane.js'
import { logsEveryRequest } from '../observability/logger.js'

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

  const { authenticator, callerRateLimit } = app

  /** The caller is known: the admin check, then the rate limit (it counts per caller), before any body is read. */
  function admitted (request: FastifyRequest, reply: FastifyReply, caller: Caller, adminOnly: boolean, done: HookHandlerDoneFunction): void {
    request.caller = caller
    if (adminOnly && !caller.admin) {
      try { assertAdmin(caller) } catch (err) { done(err as Error); return }
    }
    callerRateLimit(request, reply, done)
  }

  /**
   * Authentication as a callback hook: an API key or a JWT verified before is checked without a promise
   * (a token cache hit is one synchronous pass, issue 12); only a JWT not seen yet is verified asynchronously.
   */
  const authenticate = (adminOnly: boolean): onRequestHookHandler => function authenticateCaller (request, reply, done) {
    let caller: Caller | undefined
    // Node keeps the first of several Authorization headers; a proxy in front may keep the last and see
    // another caller. RFC 9110 allows one: more is refused, never resolved one way or the other.
    if (readHeaders(request.raw.rawHeaders).authorizations > 1) {
      done(new BrokerError('CB_UNAUTHENTICATED', 'more than one Authorization header'))
      return
    }
    try {
      caller = authenticator.identify(request.headers.authorization)
    } catch (err) {
      done(err as Error)
      return
    }
    if (caller !== undefined) {
      admitted(request, reply, caller, adminOnly, done)
      return
    }
    authenticator.authenticate(request.headers.authorization).then(verified => { admitted(request, reply, verified, adminOnly, done) }, done)
  }
  // One audit line per denial, with its code (the fixed words of our own errors; never a credential).
  app.addHook('onError', (request, _reply, error, done) => {
    if (error instanceof BrokerError && (error.statusCode === 401 || error.statusCode === 403 || error.statusCode === 429)) app.audit.denied(request, error.code, error.statusCode)
    done()
  })
  const authenticateAny = authenticate(false)
  const authenticateAdmin = authenticate(true)
  // Route-level hooks, first in each route's list: whether a route is for admins is known here, once,
  // instead of being looked up on every request.
  app.addHook('onRoute', (route) => {
    const own = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]
    route.onRequest = [route.config?.admin === true ? authenticateAdmin : authenticateAny, ...own]
  })

  app.addHook('preHandler', async (request) => {
    const id = (request.params as { id?: unknown } | undefined)?.id
    if (typeof id !== 'string') return
    const credential = credentialsById.get(id)
    if (credential === undefined) throw new BrokerError('CB_CREDENTIAL_NOT_FOUND', `no credential "${id}"`)
    if (request.routeOptions.config.admin !== true && request.caller !== null) assertMayUse(request.caller, credential)
    request.credential = credential
  })

  // Token cache hits are answered ahead of Fastify (routes/token-fast-lane.ts), except while Fastify logs
  // every request (debug, trace): those lines would be missing for them.
  if (!logsEveryRequest(app.config.logLevel)) app.connections.answerFirst(tokenFastLane(app, credentialsById))

  await app.register(credentialRoutes)
  await app.register(proxyRoutes)
  await app.register(adminRoutes, { prefix: '/admin' })
}
