import fp from 'fastify-plugin'
import { createMetrics, type Metrics } from './metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

/** Decorates `metrics` (a registry of our own, never prom-client's global one). */
export const metricsPlugin = fp<{ metrics?: Metrics | undefined }>(async (app, options) => {
  app.decorate('metrics', options.metrics ?? createMetrics())
}, { name: 'metrics', fastify: '5.x' })
