/**
 * The baseline of the throughput bench: a bare Fastify 5 app with one route answering a fixed JSON body
 * (BARE_BODY, the same size as the broker's token answer). No logger, no plugins, no hooks: what the
 * broker's token route is compared against. Listens on 127.0.0.1:PORT and prints "listening" when ready.
 */
import Fastify from 'fastify'

const body = JSON.parse(process.env.BARE_BODY ?? '{}') as Record<string, unknown>
const app = Fastify()
app.get('/token', async (_request, reply) => await reply.header('cache-control', 'no-store').send(body))
await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' })
console.log('listening')

process.once('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
