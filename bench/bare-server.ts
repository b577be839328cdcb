/**
 * The baseline of the throughput bench: a bare Fastify 5 app with one route that reads the Authorization
 * header and answers the broker's body (BARE_BODY: the broker's token answer with the token replaced by as
 * many characters) with the broker's response headers (BARE_HEADERS, in the broker's order; the request id
 * is a fixed value of a UUID's length). No logger, no plugins, no hooks. Listens on 127.0.0.1:PORT and
 * prints "listening" when ready.
 */
import Fastify from 'fastify'

const body = JSON.parse(process.env.BARE_BODY ?? '{}') as Record<string, unknown>
const headers = JSON.parse(process.env.BARE_HEADERS ?? '[]') as Array<[string, string]>
const app = Fastify()
app.get('/v1/credentials/:id/token', (request, reply) => {
  if (request.headers.authorization === undefined) return reply.code(401).send({})
  for (const [name, value] of headers) void reply.header(name, value)
  return reply.send(body)
})
await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' })
console.log('listening')

process.once('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
