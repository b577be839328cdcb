/**
 * `ANY /v1/credentials/{id}/proxy/{path}`: the broker calls the provider's API for the caller with the
 * credential injected (src/proxy/proxy.ts). Registered inside routes/v1.ts, so authentication, the
 * per-caller rate limit and the credential's allowed_callers apply exactly as on the token route.
 *
 * The path is taken from the URL as received, never from the router's decoded parameter: what is judged
 * (src/proxy/path.ts) is what is forwarded.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import type { SwaggerTransform } from '@fastify/swagger'
import { z } from 'zod'
import type { CredentialConfig } from '../config.js'
import { defaultProxyBodyLimitBytes, proxyMethods } from '../config/proxy.js'
import { BrokerError } from '../errors.js'
import type { ProxyRequestLabels } from '../observability/metrics.js'
import { createUpstreamClient } from '../proxy/forward.js'
import { callerResponseHeaders, upstreamRequestHeaders } from '../proxy/headers.js'
import { upstreamTarget, type UpstreamTarget } from '../proxy/path.js'
import { apiBaseOf, assertBodyWithinLimit, assertProxyAllowed } from '../proxy/policy.js'
import { createProxy } from '../proxy/proxy.js'
import { routeOf } from '../observability/audit.js'
import { documentTransform, operation } from './docs.js'
import { CredentialIdParams, problems } from './schemas.js'

/** What the audit line and the metrics of one proxied request need, filled in as the request goes. */
interface ProxyOutcome {
  startedAt: number
  target?: UpstreamTarget | undefined
  attempts: number
  tokenFingerprint?: string | undefined
}

const outcomes = new WeakMap<FastifyRequest, ProxyOutcome>()

/** `/v1/credentials/{id}/proxy/` + path, `?` + query: split from the raw URL (ids never hold "/"). */
const proxyUrlPattern = /^\/v1\/credentials\/[^/?]+\/proxy\/([^?]*)(?:\?(.*))?$/s

function statusClass (status: number): ProxyRequestLabels['status_class'] {
  return `${Math.min(5, Math.max(1, Math.floor(status / 100)))}xx` as ProxyRequestLabels['status_class']
}

const ProxyParams = CredentialIdParams.extend({
  '*': z.string().describe('the path under the credential\'s API base (what follows /proxy/), then the query string as the provider expects it')
})

/** OpenAPI: the router's wildcard `*` documented as a `{path}` parameter (a `{*}` template reads poorly). */
const documentWildcardAsPath: SwaggerTransform = (input) => {
  const { schema, url } = documentTransform(input as Parameters<typeof documentTransform>[0])
  const params = schema.params as { properties?: Record<string, unknown>, required?: string[] } | undefined
  if (params?.properties?.['*'] !== undefined) {
    const { '*': wildcard, ...named } = params.properties
    params.properties = { ...named, path: wildcard }
    params.required = params.required?.map(name => name === '*' ? 'path' : name)
  }
  return { schema, url: url.replace(/\*$/, ':path') }
}

export const proxyRoutes: FastifyPluginAsync = async (app) => {
  const api = app.withTypeProvider<ZodTypeProvider>()
  const upstream = createUpstreamClient()
  const proxy = createProxy({ broker: app.broker, upstream })
  const credentialIds = new Set(app.config.credentials.map(credential => credential.id))
  app.addHook('onClose', async () => { await upstream.close() })

  // Any content type, kept as the raw bytes: the body is forwarded byte for byte (and may be sent twice).
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => { done(null, body) })

  /** The one place a proxied request is audited and counted. */
  function recordAnswer (request: FastifyRequest, reply: FastifyReply): void {
    const outcome = outcomes.get(request)
    if (outcome === undefined) return
    const id = (request.params as { id?: unknown }).id
    const credentialId = typeof id === 'string' && credentialIds.has(id) ? id : undefined
    const seconds = (performance.now() - outcome.startedAt) / 1000
    // The broker's own 401/403/429 already has its "request denied" line (routes/v1.ts); one line a request.
    const deniedHere = outcome.attempts === 0 && (reply.statusCode === 401 || reply.statusCode === 403 || reply.statusCode === 429)
    if (!deniedHere) {
      app.audit.record(request, {
        credentialId,
        // proxied: the upstream answered; failed: it could not be reached or no token could be had; refused: 400/404/409/413.
        outcome: outcome.attempts > 0 ? 'proxied' : reply.statusCode >= 500 ? 'failed' : 'refused',
        route: routeOf(request),
        method: request.method,
        // Without the query: it may carry personal data.
        upstreamPath: outcome.target?.path,
        status: reply.statusCode,
        attempts: outcome.attempts,
        durationMs: Math.round(seconds * 1000),
        fingerprint: outcome.tokenFingerprint
      }, 'request proxied')
    }
    if (credentialId === undefined) return
    app.metrics.proxyRequests.inc({ credential: credentialId, method: request.method, status_class: statusClass(reply.statusCode) })
    app.metrics.proxyRequestDuration.observe({ credential: credentialId }, seconds)
  }
  app.addHook('onRequest', async (request) => { outcomes.set(request, { startedAt: performance.now(), attempts: 0 }) })
  app.addHook('onResponse', async (request, reply) => { recordAnswer(request, reply) })

  /** Aborts the upstream call when the caller goes away before its answer is complete. */
  function callerGone (reply: FastifyReply): AbortSignal {
    const controller = new AbortController()
    reply.raw.once('close', () => { if (!reply.raw.writableFinished) controller.abort() })
    return controller.signal
  }

  for (const method of proxyMethods) api.route({
    method,
    url: '/credentials/:id/proxy/*',
    exposeHeadRoute: false,
    config: { swaggerTransform: documentWildcardAsPath },
    // The largest body any credential accepts; each credential's own limit is checked in the handler.
    bodyLimit: Math.max(1, ...app.config.credentials.map(credential => credential.proxy.body_limit), defaultProxyBodyLimitBytes),
    schema: {
      // One operation per method: each gets its own operationId (proxyGet, proxyPost, …).
      ...operation({
        id: `proxy${method.charAt(0)}${method.slice(1).toLowerCase()}`,
        summary: 'Call the provider\'s API with the credential injected (token, or SIR Giving signature at send time)',
        description: 'Forwards the request to the credential\'s API base + `/{path}` + the query as sent. The caller\'s Authorization, cookies, Host and hop-by-hop headers are dropped; the body (any content type, up to `proxy.body_limit`) is passed byte for byte. The answer is the upstream\'s status, headers (minus hop-by-hop and Set-Cookie) and streamed body; redirects are not followed. An upstream 401 (or Kivra 40015) on a token credential forces one deduplicated refresh and one retry. Broker failures are problem+json: 400 a path that would leave the API base, 403 a method or path outside `proxy.methods`/`proxy.allowed_paths`, 409 no API base, 413 body too large, 502 upstream unreachable, 503 no usable token, 504 upstream timeout.',
        tag: 'proxy',
        access: 'caller'
      }),
      params: ProxyParams,
      response: {
        default: { description: 'The upstream\'s answer, as it came: its status, headers (minus hop-by-hop and Set-Cookie) and body', content: { '*/*': { schema: z.unknown().describe('the upstream\'s body, byte for byte'), example: { id: 'content-42', status: 'sent' } } } },
        ...problems(400, 401, 403, 404, 409, 413, 429, 502, 503, 504)
      }
    },
    handler: async (request, reply) => {
      const credential = request.credential as CredentialConfig
      const outcome = outcomes.get(request) as ProxyOutcome
      const match = proxyUrlPattern.exec(request.url)
      if (match === null) throw new BrokerError('CB_BAD_REQUEST', 'the proxied path could not be read from the URL')
      const target = upstreamTarget(apiBaseOf(credential), match[1] as string, match[2])
      outcome.target = target
      assertProxyAllowed(credential, request.method, `/${match[1] as string}`)
      const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
      assertBodyWithinLimit(credential, body)

      const answer = await proxy.forward({
        credential,
        method: request.method,
        target,
        headers: upstreamRequestHeaders(request.headers),
        body,
        timeoutMs: credential.proxy.timeout_ms ?? credential.timeout_ms,
        minTtlSeconds: credential.proxy.min_ttl,
        signal: callerGone(reply)
      })
      outcome.attempts = answer.attempts
      outcome.tokenFingerprint = answer.tokenFingerprint
      return await reply.code(answer.status).headers(callerResponseHeaders(answer.headers)).send(answer.body)
    }
  })
}
