import type { FastifyPluginAsync } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { healthDocs } from './operations.js'

const DependencySchema = z.object({
  kind: z.string(),
  state: z.string(),
  detail: z.string().optional(),
  embedded: z.boolean()
})

export const ReadinessSchema = z.object({
  status: z.enum(['ready', 'degraded', 'not_ready']),
  reason: z.string().optional().describe('why the replica is degraded or not ready (absent when ready)'),
  checks: z.object({
    store: DependencySchema,
    secrets: DependencySchema,
    config: z.object({ credentials: z.number().int().min(0), callers: z.number().int().min(0), example_credentials: z.boolean() })
  })
}).meta({ id: 'Readiness' })

/** Liveness, readiness and metrics: unauthenticated, for the kubelet and Prometheus. */
export const healthRoutes: FastifyPluginAsync = async (app) => {
  const api = app.withTypeProvider<ZodTypeProvider>()

  api.get('/healthz', {
    schema: { ...healthDocs.liveness, response: { 200: z.object({ status: z.literal('ok') }) } }
  }, async (_request, reply) => {
    return await reply.header('cache-control', 'no-store').send({ status: 'ok' as const })
  })

  api.get('/readyz', {
    schema: {
      ...healthDocs.readiness,
      response: { 200: ReadinessSchema, 503: ReadinessSchema }
    }
  }, async (_request, reply) => {
    const health = await app.broker.health()
    return await reply.code(health.state === 'not_ready' ? 503 : 200).header('cache-control', 'no-store').send({
      status: health.state,
      reason: health.reason,
      checks: {
        store: { kind: health.store.kind, state: health.store.state, detail: health.store.detail, embedded: health.store.kind === 'memory' },
        secrets: { kind: health.secrets.kind, state: health.secrets.state, detail: health.secrets.detail, embedded: health.secrets.kind === 'file' },
        config: { credentials: app.config.credentials.length, callers: app.config.callers.length, example_credentials: app.config.usingExampleCredentials }
      }
    })
  })

  api.get('/metrics', {
    schema: { ...healthDocs.metrics, produces: ['text/plain'] }
  }, async (_request, reply) => {
    const text = await app.metrics.registry.metrics()
    return await reply.header('content-type', app.metrics.registry.contentType).send(text)
  })
}
