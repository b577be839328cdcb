import { Agent, request as httpRequest } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { sha256Hex, tempFile } from '../support/app.js'
import { audience, callerToken, signingKey } from '../auth/jwt-issuer.js'
import { sleep } from '../../src/time.js'
import { bearer, keys, startApiWorld, type ApiWorld } from './world.js'

interface RawAnswer { status: number, headers: Array<[string, string]>, body: string }

/** One request over a real socket, with the answer's headers in the order they were written. */
async function send (url: string, path: string, options: { method?: string, headers?: Array<[string, string]> } = {}): Promise<RawAnswer> {
  return await new Promise((resolve, reject) => {
    // Headers as a flat list, so a name can repeat; Node then adds none of its own, so Host is given here.
    const headers = [['host', new URL(url).host], ...options.headers ?? []].flat()
    const outgoing = httpRequest(`${url}${path}`, { method: options.method ?? 'GET', headers }, response => {
      let body = ''
      response.setEncoding('utf8').on('data', (chunk: string) => { body += chunk })
      response.on('end', () => {
        const answered: Array<[string, string]> = []
        for (let index = 0; index < response.rawHeaders.length; index += 2) answered.push([(response.rawHeaders[index] as string).toLowerCase(), response.rawHeaders[index + 1] as string])
        resolve({ status: response.statusCode as number, headers: answered, body })
      })
    })
    outgoing.on('error', reject)
    outgoing.end()
  })
}

/** Which answers the fast lane gave: peekToken is asked with an `admit` only by the lane. */
function watchLane (app: FastifyInstance): { answered: () => number } {
  const broker = app.broker as unknown as { peekToken: (...args: unknown[]) => unknown }
  const peek = broker.peekToken.bind(broker)
  let answered = 0
  broker.peekToken = (...args: unknown[]) => {
    const issued = peek(...args)
    if (args[2] !== undefined && issued !== undefined) answered++
    return issued
  }
  return { answered: () => answered }
}

/** What may differ between two answers of the same request: the request id, the time, the counts. */
const moving = new Set(['x-request-id', 'date', 'x-ratelimit-remaining', 'x-ratelimit-reset'])
const comparable = (headers: Array<[string, string]>): Array<[string, string]> => headers.filter(([name]) => !['date', 'connection', 'keep-alive'].includes(name)).map(([name, value]) => [name, moving.has(name) ? '*' : value])
const withoutClock = (body: string): unknown => ({ ...JSON.parse(body) as Record<string, unknown>, expires_in: '*' })

/** Outside a rate-limit window's last seconds: a caller's first count of a window goes through Redis. */
async function awayFromWindowEdge (): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000)
  if (left < 5000) await sleep(left + 50)
}

describe('GET /v1/credentials/:id/token through the fast lane ahead of Fastify', () => {
  let world: ApiWorld
  let app: FastifyInstance
  let url: string
  let lane: { answered: () => number }
  let jwt: string
  const limitedKey = 'test-limited-key-0123456789'

  beforeAll(async () => {
    const key = await signingKey('ES256')
    world = await startApiWorld({
      callerJwt: { issuer: 'https://kubernetes.default.svc.cluster.local', audience, jwks_file: tempFile('jwks.json', JSON.stringify({ keys: [key.jwk] })) },
      extraCallers: [{ id: 'limited', api_key_sha256: sha256Hex(limitedKey), rate_limit_per_minute: 3 }, { id: 'jwt-service', jwt_subject: 'system:serviceaccount:ns:jwt-service' }],
      extraAllowedOnKivra: ['limited', 'jwt-service']
    })
    jwt = await callerToken(key, { sub: 'system:serviceaccount:ns:jwt-service' })
    app = world.testApp.app
    await app.listen({ port: 0, host: '127.0.0.1' })
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
    lane = watchLane(app)
  })
  afterAll(async () => { await world.close() })
  beforeEach(async () => {
    await awayFromWindowEdge()
    // The mint, and the caller's first count of the window (through Redis, so through Fastify).
    expect((await send(url, '/v1/credentials/kivra/token', { headers: [['authorization', `Bearer ${keys.service}`]] })).status).toBe(200)
  })

  it('answers a cache hit with the bytes Fastify\'s route would: status, headers in their order, body', async () => {
    for (const path of ['/v1/credentials/kivra/token?min_ttl=60', '/v1/credentials/kivra/token']) {
      const before = lane.answered()
      const fast = await send(url, path, { headers: [['authorization', `Bearer ${keys.service}`]] })
      expect(lane.answered(), path).toBe(before + 1)
      const routed = await app.inject({ method: 'GET', url: path, headers: bearer(keys.service) })
      expect(lane.answered(), 'inject() never reaches the lane').toBe(before + 1)

      expect(fast.status).toBe(200)
      expect(routed.statusCode).toBe(200)
      expect(comparable(fast.headers)).toEqual(comparable(Object.entries(routed.headers).map(([name, value]) => [name, String(value)])))
      expect(withoutClock(fast.body)).toEqual(withoutClock(routed.body))
      expect(fast.headers.find(([name]) => name === 'x-request-id')?.[1]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      expect(world.standIns.kivra.isTokenValid((JSON.parse(fast.body) as { access_token: string }).access_token)).toBe(true)
    }
  })

  it('answers a JWT caller once its token has been verified (by Fastify, the first time)', async () => {
    const headers: Array<[string, string]> = [['authorization', `Bearer ${jwt}`]]
    const before = lane.answered()
    const first = await send(url, '/v1/credentials/kivra/token', { headers })
    expect(first.status).toBe(200)
    expect(lane.answered(), 'a JWT not seen before is verified asynchronously, by Fastify').toBe(before)
    const again = await send(url, '/v1/credentials/kivra/token', { headers })
    expect(again.status).toBe(200)
    expect(lane.answered()).toBe(before + 1)
    const routed = await app.inject({ method: 'GET', url: '/v1/credentials/kivra/token', headers: { authorization: `Bearer ${jwt}` } })
    expect(comparable(again.headers)).toEqual(comparable(Object.entries(routed.headers).map(([name, value]) => [name, String(value)])))
  })

  it('leaves a GET with a body (Content-Length or chunked) to Fastify', async () => {
    for (const extra of [['content-length', '0'], ['transfer-encoding', 'chunked']] as Array<[string, string]>) {
      const before = lane.answered()
      const answer = await send(url, '/v1/credentials/kivra/token', { headers: [['authorization', `Bearer ${keys.service}`], extra] })
      expect(answer.status, extra[0]).toBe(200)
      expect(lane.answered(), extra[0]).toBe(before)
    }
  })

  it('serves many requests on one kept-alive connection, lane and Fastify answers alternating', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    const sockets = new Set<unknown>()
    try {
      const before = lane.answered()
      for (let attempt = 0; attempt < 60; attempt++) {
        // Every third request takes Fastify's path (a scope), the others the lane.
        const path = attempt % 3 === 2 ? '/v1/credentials/kivra/token?scope=post:kivra.v1.tenant.example.content' : '/v1/credentials/kivra/token?min_ttl=30'
        const status = await new Promise<number>((resolve, reject) => {
          httpRequest(`${url}${path}`, { agent, headers: { authorization: `Bearer ${keys.service}` } }, response => {
            sockets.add(response.socket)
            response.resume().on('end', () => { resolve(response.statusCode as number) })
          }).on('error', reject).end()
        })
        expect(status, path).toBe(200)
      }
      expect(lane.answered()).toBe(before + 40)
      expect(sockets.size).toBe(1)
    } finally {
      agent.destroy()
    }
  })

  it('leaves everything else to Fastify, which answers it as inject() does', async () => {
    const service: Array<[string, string]> = [['authorization', `Bearer ${keys.service}`]]
    const cases: Array<{ name: string, path: string, method?: string, headers: Array<[string, string]> }> = [
      { name: 'no Authorization', path: '/v1/credentials/kivra/token', headers: [] },
      { name: 'unknown key', path: '/v1/credentials/kivra/token', headers: [['authorization', 'Bearer not-a-key-of-anyone']] },
      { name: 'unknown credential', path: '/v1/credentials/nowhere/token', headers: service },
      { name: 'caller not allowed', path: '/v1/credentials/kigo-other/token', headers: service },
      { name: 'a front-end caller on a backend-only credential', path: '/v1/credentials/kivra/token', headers: [['authorization', `Bearer ${keys.frontend}`]] },
      { name: 'min_ttl not a number', path: '/v1/credentials/kivra/token?min_ttl=soon', headers: service },
      { name: 'min_ttl over a day', path: '/v1/credentials/kivra/token?min_ttl=86401', headers: service },
      { name: 'min_ttl empty', path: '/v1/credentials/kivra/token?min_ttl=', headers: service },
      { name: 'a scope', path: '/v1/credentials/kivra/token?scope=post:kivra.v1.tenant.example.content', headers: service },
      { name: 'a percent-encoded id', path: '/v1/credentials/%6Bivra/token', headers: service },
      { name: 'a signing credential', path: '/v1/credentials/sir/token', headers: service },
      { name: 'HEAD', path: '/v1/credentials/kivra/token', method: 'HEAD', headers: service },
      { name: 'POST', path: '/v1/credentials/kivra/token', method: 'POST', headers: service }
    ]
    for (const { name, path, method = 'GET', headers } of cases) {
      const before = lane.answered()
      const fast = await send(url, path, { method, headers })
      const routed = await app.inject({ method: method as 'GET', url: path, headers: Object.fromEntries(headers) })
      expect(lane.answered(), name).toBe(before)
      expect(fast.status, name).toBe(routed.statusCode)
      const code = (body: string): unknown => body === '' ? undefined : (JSON.parse(body) as { code?: unknown }).code
      expect(code(fast.body), name).toBe(code(routed.body))
    }
    // Two Authorization headers (inject cannot send them): Fastify refuses, the lane never answers.
    const before = lane.answered()
    const doubled = await send(url, '/v1/credentials/kivra/token', { headers: [['authorization', `Bearer ${keys.service}`], ['authorization', `Bearer ${keys.other}`]] })
    expect(doubled.status).toBe(401)
    expect(lane.answered()).toBe(before)
  })

  it('writes the audit line the route writes, with the caller\'s request ids as Node joins repeated ones', async () => {
    const headers: Array<[string, string]> = [['authorization', `Bearer ${keys.service}`], ['x-request-id', 'first'], ['X-Request-Id', 'second']]
    const before = lane.answered()
    const fast = await send(url, '/v1/credentials/kivra/token', { headers })
    expect(lane.answered()).toBe(before + 1)
    const routed = await app.inject({ method: 'GET', url: '/v1/credentials/kivra/token', headers: { authorization: `Bearer ${keys.service}`, 'x-request-id': 'first, second' } })
    const lineOf = (id: string | undefined): Record<string, unknown> | undefined => world.testApp.logs.entries().find(entry => entry.msg === 'token issued' && entry.reqId === id)
    const fastLine = lineOf(fast.headers.find(([name]) => name === 'x-request-id')?.[1])
    const routedLine = lineOf(routed.headers['x-request-id'] as string)
    expect(fastLine).toMatchObject({ caller_request_id: 'first, second', client: '127.0.0.1' })
    const { reqId: _fastId, time: _fastTime, ...fastRest } = fastLine as Record<string, unknown>
    const { reqId: _routedId, time: _routedTime, ...routedRest } = routedLine as Record<string, unknown>
    expect(fastRest).toEqual(routedRest)
  })

  it('leaves a request without Host to the server\'s 400', async () => {
    const { port } = app.server.address() as AddressInfo
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => { socket.end(`GET /v1/credentials/kivra/token HTTP/1.1\r\nAuthorization: Bearer ${keys.service}\r\nConnection: close\r\n\r\n`) })
      let text = ''
      socket.setEncoding('utf8').on('data', (chunk: string) => { text += chunk }).on('end', () => { resolve(text) }).on('error', reject)
    })
    expect(answer).toMatch(/^HTTP\/1\.1 400 /)
    expect(answer).toContain('"code":"CB_BAD_REQUEST"')
  })

  it('counts each request once against the caller\'s limit, and leaves the 429 to Fastify', async () => {
    const limited: Array<[string, string]> = [['authorization', `Bearer ${limitedKey}`]]
    const answers: RawAnswer[] = []
    for (let attempt = 0; attempt < 5; attempt++) answers.push(await send(url, '/v1/credentials/kivra/token', { headers: limited }))
    expect(answers.map(answer => answer.status)).toEqual([200, 200, 200, 429, 429])
    expect(answers.slice(0, 3).map(answer => answer.headers.find(([name]) => name === 'x-ratelimit-remaining')?.[1])).toEqual(['2', '1', '0'])
    expect((JSON.parse(answers[3]?.body as string) as { code: string }).code).toBe('CB_RATE_LIMITED')
  })
})

describe('the fast lane at LOG_LEVEL=debug', () => {
  it('is not taken, so Fastify logs every request', async () => {
    const world = await startApiWorld({ logLevel: 'debug' })
    try {
      const { app } = world.testApp
      await app.listen({ port: 0, host: '127.0.0.1' })
      const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
      const lane = watchLane(app)
      await awayFromWindowEdge()
      for (let attempt = 0; attempt < 3; attempt++) expect((await send(url, '/v1/credentials/kivra/token', { headers: [['authorization', `Bearer ${keys.service}`]] })).status).toBe(200)
      expect(lane.answered()).toBe(0)
      expect(world.testApp.logs.entries().filter(entry => entry.msg === 'request completed')).toHaveLength(3)
    } finally {
      await world.close()
    }
  })
})
