/**
 * ANY /v1/credentials/:id/proxy/* — what crosses the proxy: the caller's headers and body go up (minus its
 * own credentials and hop-by-hop headers, plus the provider token), the upstream's status, headers and
 * body come back, streamed; SIR Giving requests are signed over exactly what was sent.
 */
import { createHash, createHmac } from 'node:crypto'
import { get } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fingerprint } from '../../src/broker/grant-identity.js'
import { keys, send, startProxyWorld, type ProxyWorld } from './world.js'

const auth = { authorization: `Bearer ${keys.service}` }
const sha256Hex = (bytes: Buffer | string): string => createHash('sha256').update(bytes).digest('hex')

describe('ANY /v1/credentials/:id/proxy/*: forwarding', () => {
  let world: ProxyWorld
  beforeAll(async () => { world = await startProxyWorld() })
  afterAll(async () => { await world.close() })

  /** What the API stand-in received while `run` ran. */
  async function upstreamDuring<T> (run: () => Promise<T>): Promise<{ result: T, seen: ProxyWorld['api']['requests'] }> {
    const before = world.api.requests.length
    const result = await run()
    return { result, seen: world.api.requests.slice(before) }
  }

  it('sends path and query as written, the caller\'s headers minus its credentials and hop-by-hop ones, and the provider token', async () => {
    const { result: answer, seen } = await upstreamDuring(async () => await send(world.port, {
      path: '/v1/credentials/kivra/proxy/v1/echo/a%20b?b=2&a=1&x=%41&empty=',
      headers: {
        ...auth,
        cookie: 'caller-session=1',
        'x-custom': 'c-1',
        accept: 'application/json',
        connection: 'keep-alive, x-caller-hop',
        'x-caller-hop': 'named by Connection',
        'keep-alive': 'timeout=5',
        te: 'trailers',
        'proxy-authorization': 'Basic Y2FsbGVyOnNlY3JldA==',
        'x-partner-key': 'forged'
      }
    }))
    expect(answer.status).toBe(201)
    expect(seen).toHaveLength(1)
    const upstream = seen[0] as ProxyWorld['api']['requests'][number]
    expect(upstream.url).toBe('/api/v1/echo/a%20b?b=2&a=1&x=%41&empty=')
    expect(upstream.token).toBeDefined()
    expect(world.kivra.isTokenValid(upstream.token as string)).toBe(true)
    expect(upstream.headers.host).toBe(new URL(world.api.url).host)
    expect(upstream.headers).toMatchObject({ 'x-custom': 'c-1', accept: 'application/json' })
    for (const dropped of ['cookie', 'x-caller-hop', 'keep-alive', 'te', 'proxy-authorization', 'x-partner-key']) expect(upstream.headers[dropped], dropped).toBeUndefined()
    expect(JSON.stringify(upstream.headers)).not.toContain(keys.service)
  })

  it('answers with the upstream\'s status, headers minus Set-Cookie and hop-by-hop ones, and body', async () => {
    const answer = await send(world.port, { path: '/v1/credentials/kivra/proxy/v1/echo', headers: auth })
    expect(answer.status).toBe(201)
    expect(answer.headers['x-upstream']).toBe('yes')
    expect(answer.headers['content-type']).toBe('application/json')
    expect(answer.headers['set-cookie']).toBeUndefined()
    expect(answer.headers['x-upstream-hop']).toBeUndefined()
    expect(JSON.parse(answer.body.toString())).toEqual({ method: 'GET', url: '/api/v1/echo', body: '' })
  })

  it.each([
    ['PUT', 'application/octet-stream', Buffer.from([0, 1, 2, 253, 254, 255, 13, 10, 0])],
    ['POST', 'application/json', Buffer.from('{ "amount" :1000,\n  "note":"kept as written" }')],
    ['PATCH', 'text/plain; charset=latin1', Buffer.from('caf\xe9', 'latin1')],
    ['DELETE', 'application/x-www-form-urlencoded', Buffer.from('a=1&b=%20')],
    ['POST', undefined, Buffer.from('no content type at all')]
  ])('passes a %s body (%s) byte for byte', async (method, contentType, body) => {
    const { result: answer, seen } = await upstreamDuring(async () => await send(world.port, {
      method,
      path: '/v1/credentials/kivra/proxy/v1/echo',
      headers: { ...auth, ...(contentType === undefined ? {} : { 'content-type': contentType }) },
      body
    }))
    expect(answer.status).toBe(201)
    expect(seen[0]?.method).toBe(method)
    expect(seen[0]?.body.equals(body)).toBe(true)
    expect(seen[0]?.headers['content-type']).toBe(contentType)
    expect(seen[0]?.headers['content-length']).toBe(String(body.length))
  })

  it('keeps a first segment with a colon as a segment under the base (it is never resolved as a URL)', async () => {
    const { result: answer, seen } = await upstreamDuring(async () => await send(world.port, { path: '/v1/credentials/kivra/proxy/javascript:alert(1)/echo', headers: auth }))
    expect(answer.status).toBe(201)
    expect(seen.map(request => request.url)).toEqual(['/api/javascript:alert(1)/echo'])
  })

  it('forwards HEAD as HEAD', async () => {
    const { result: answer, seen } = await upstreamDuring(async () => await send(world.port, { method: 'HEAD', path: '/v1/credentials/kivra/proxy/v1/echo', headers: auth }))
    expect(answer.status).toBe(201)
    expect(answer.body.length).toBe(0)
    expect(seen.map(request => request.method)).toEqual(['HEAD'])
  })

  it('does not follow a redirect: the 302 comes back as it is, and only one request went upstream', async () => {
    const { result: answer, seen } = await upstreamDuring(async () => await send(world.port, { path: '/v1/credentials/kivra/proxy/v1/redirect', headers: auth }))
    expect(answer.status).toBe(302)
    expect(answer.headers.location).toBe('https://elsewhere.example/login')
    expect(seen).toHaveLength(1)
  })

  it('streams a 10 MiB answer: the upstream writes each MiB only after the caller has read the one before', async () => {
    const { bigChunkBytes, bigChunks } = world.api
    const expected = createHash('sha256')
    for (let index = 0; index < bigChunks; index++) expected.update(Buffer.alloc(bigChunkBytes, index % 256))
    const { total, digest, status } = await new Promise<{ total: number, digest: string, status: number }>((resolve, reject) => {
      get({ host: '127.0.0.1', port: world.port, path: '/v1/credentials/kivra/proxy/v1/big', headers: auth }, (res) => {
        const hash = createHash('sha256')
        let total = 0
        res.on('data', (chunk: Buffer) => {
          total += chunk.length
          hash.update(chunk)
          world.api.bigReceived = total
        })
        res.on('end', () => { resolve({ total, digest: hash.digest('hex'), status: res.statusCode ?? 0 }) })
        res.on('error', reject)
        res.on('aborted', () => { resolve({ total, digest: '', status: res.statusCode ?? 0 }) })
      }).on('error', reject)
    })
    expect(status).toBe(200)
    // A proxy that held the answer back until it had all of it would have stalled the upstream at 1 MiB.
    expect(total).toBe(bigChunks * bigChunkBytes)
    expect(digest).toBe(expected.digest('hex'))
    expect(world.api.bigMaxInFlight).toBeLessThanOrEqual(bigChunkBytes)
  }, 30_000)

  it('writes one audit line per proxied request (no query, no token) and counts it', async () => {
    const answer = await send(world.port, { path: '/v1/credentials/kivra/proxy/v1/echo?user=someone@example.com', headers: auth })
    const token = world.api.requests.at(-1)?.token as string
    const requestId = answer.headers['x-request-id'] as string
    const lines = world.testApp.logs.entries().filter(entry => entry.msg === 'request proxied' && entry.reqId === requestId)
    expect(lines).toEqual([expect.objectContaining({
      audit: true, caller: 'service', credentialId: 'kivra', method: 'GET', upstreamPath: '/api/v1/echo', status: 201, attempts: 1, fingerprint: fingerprint(token), durationMs: expect.any(Number)
    })])
    expect(world.testApp.logs.text()).not.toContain(token)
    expect(world.testApp.logs.text()).not.toContain('someone@example.com')
    const metrics = await world.testApp.app.metrics.registry.metrics()
    expect(metrics).toMatch(/credential_broker_proxy_requests_total\{credential="kivra",method="GET",status_class="2xx"\} [1-9]/)
    expect(metrics).toMatch(/credential_broker_proxy_request_duration_seconds_count\{credential="kivra"\} [1-9]/)
  })

  describe('SIR Giving', () => {
    it.each([
      ['a POST with a JSON body', 'POST', '/v1/partner/donations?campaign=42&currency=USD', '{"amount":1000,"idempotencyKey":"abc-1"}'],
      ['a GET with an empty body', 'GET', '/v1/partner/pools/7', '']
    ])('signs %s over exactly what is sent (the stand-in accepts it; the documented formula matches)', async (_name, method, path, body) => {
      const accepted = world.sir.acceptedCalls
      const answer = await send(world.port, {
        method,
        path: `/v1/credentials/sir/proxy${path}`,
        headers: { ...auth, 'content-type': 'application/json', 'x-signature': 'forged', 'x-timestamp': '1' },
        body: body === '' ? undefined : body
      })
      expect(answer.status).toBe(200)
      expect(world.sir.acceptedCalls).toBe(accepted + 1)
      const seen = world.sir.requests.at(-1)
      expect(seen?.path).toBe(path)
      const headers = seen?.headers as Record<string, string>
      expect(headers['x-partner-key']).toBe(world.sir.secret.secretKey)
      const expected = createHmac('sha256', world.sir.secret.hmacSecret as string)
        .update(`${headers['x-timestamp']}${method}${path}${sha256Hex(body)}`).digest('hex')
      expect(headers['x-signature']).toBe(expected)
      expect(Math.abs(Number(headers['x-timestamp']) - Date.now() / 1000)).toBeLessThan(5)
      // The partner key went upstream only, never back to the caller.
      expect(answer.body.toString()).not.toContain(world.sir.secret.secretKey as string)
    })

    it('expose_partner_key: false refuses POST /signatures with 409, and the proxy still signs for it', async () => {
      const refused = await send(world.port, {
        method: 'POST',
        path: '/v1/credentials/sir-hidden/signatures',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ method: 'GET', path: '/v1/partner/pools', body_sha256: sha256Hex('') })
      })
      expect(refused.status).toBe(409)
      expect(JSON.parse(refused.body.toString())).toMatchObject({ code: 'CB_UNSUPPORTED_OPERATION' })
      expect(refused.body.toString()).not.toContain(world.sir.secret.secretKey as string)
      const accepted = world.sir.acceptedCalls
      expect((await send(world.port, { path: '/v1/credentials/sir-hidden/proxy/v1/partner/pools', headers: auth })).status).toBe(200)
      expect(world.sir.acceptedCalls).toBe(accepted + 1)
    })
  })
})
