/**
 * client.proxy against the real broker's proxy route (buildTestApp: real Redis, listening on loopback),
 * a Kivra stand-in minting the provider token, and a real upstream HTTP server as the credential's API.
 */
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BrokerError, createBrokerClient, type BrokerClient } from '../../client/src/index.js'
import { apiKeyCallers, buildTestApp, type TestApp } from '../support/app.js'
import { freePort } from '../support/ports.js'
import { bearerToken, startKivraStandIn, type KivraStandIn } from '../support/providers/index.js'

const apiKey = 'proxy-test-caller-key'
const otherKey = 'proxy-test-other-key'

/** One request as the broker's server received it (URL exactly as received). */
interface RouteRequest { method: string, url: string, headers: IncomingHttpHeaders }

/** The real broker with two proxy credentials, recording what its server receives. */
async function startBroker (kivra: KivraStandIn, apiBaseUrl: string): Promise<{ testApp: TestApp, url: string, requests: RouteRequest[], close: () => Promise<void> }> {
  const credential = (id: string, api: string): Record<string, unknown> =>
    ({ id, provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url, api_base_url: api, allowed_callers: ['service'] })
  const testApp = await buildTestApp({
    credentialsFile: {
      callers: apiKeyCallers({ service: apiKey, other: otherKey }),
      credentials: [credential('kivra', apiBaseUrl), credential('kivra-dead', `http://127.0.0.1:${await freePort()}/api`)]
    },
    secrets: { 'secret/kivra': { ...kivra.secret } }
  })
  const requests: RouteRequest[] = []
  testApp.app.server.on('request', (req) => { requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers }) })
  await testApp.app.listen({ port: 0, host: '127.0.0.1' })
  return { testApp, url: `http://127.0.0.1:${(testApp.app.server.address() as AddressInfo).port}`, requests, close: async () => { await testApp.close() } }
}

interface UpstreamRecord { method: string, url: string, headers: IncomingHttpHeaders, body: Buffer }

describe('client.proxy (against the broker\'s proxy route)', () => {
  let upstream: Server
  let upstreamUrl: string
  const received: UpstreamRecord[] = []
  let holdBody: (() => void) | undefined
  let kivra: KivraStandIn
  let broker: Awaited<ReturnType<typeof startBroker>>
  let client: BrokerClient

  beforeAll(async () => {
    upstream = createServer((req, res: ServerResponse) => {
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => { chunks.push(chunk) })
      req.on('end', () => {
        const body = Buffer.concat(chunks)
        received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body })
        const path = (req.url ?? '').split('?')[0] as string
        if (path === '/api/redirect') {
          res.writeHead(302, { location: 'https://elsewhere.example/login' }).end()
        } else if (path === '/api/missing') {
          res.writeHead(404, { 'content-type': 'application/problem+json' }).end(JSON.stringify({ type: 'about:blank', title: 'Not Found', status: 404, code: 'NOT_FOUND' }))
        } else if (path === '/api/slow-body') {
          // Headers and a first chunk now, the rest only when the test says: proves the answer streams.
          res.writeHead(200, { 'content-type': 'text/plain' })
          res.write('first-chunk;')
          holdBody = () => { res.end('rest') }
        } else {
          res.writeHead(201, { 'content-type': 'application/json', 'x-upstream': 'yes', 'set-cookie': 'session=upstream' })
          res.end(JSON.stringify({ method: req.method, url: req.url, body: body.toString('base64') }))
        }
      })
    })
    await new Promise<void>(resolve => { upstream.listen(0, '127.0.0.1', resolve) })
    upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`
    kivra = await startKivraStandIn()
    broker = await startBroker(kivra, `${upstreamUrl}/api`)
    client = createBrokerClient({ baseUrl: broker.url, apiKey })
  })
  afterAll(async () => {
    await broker.close()
    await kivra.close()
    upstream.closeAllConnections()
    await new Promise(resolve => { upstream.close(resolve) })
  })

  /** What the route and the upstream received while `run` ran. */
  async function observe<T> (run: () => Promise<T>): Promise<{ result: T, route: string[], upstream: UpstreamRecord[] }> {
    const routeBefore = broker.requests.length
    const upstreamBefore = received.length
    const result = await run()
    return { result, route: broker.requests.slice(routeBefore).map(request => request.url), upstream: received.slice(upstreamBefore) }
  }

  it('sends path and query under /v1/credentials/{id}/proxy/, encoded, with the caller key; headers and status come back', async () => {
    const { result: response, route, upstream: seen } = await observe(async () =>
      await client.proxy('kivra', '/v1/tenants/a b/ünïcode?limit=10&q=x y', { headers: { 'x-correlation': 'c-1' } }))
    expect(route).toEqual(['/v1/credentials/kivra/proxy/v1/tenants/a%20b/%C3%BCn%C3%AFcode?limit=10&q=x%20y'])
    expect(seen.map(request => request.url)).toEqual(['/api/v1/tenants/a%20b/%C3%BCn%C3%AFcode?limit=10&q=x%20y'])
    expect(broker.requests.at(-1)?.headers.authorization).toBe(`Bearer ${apiKey}`)
    // What the broker does with it: the provider token upstream, never the caller key.
    const token = bearerToken(seen[0]?.headers.authorization)
    expect(token).not.toBe(apiKey)
    expect(kivra.isTokenValid(token as string)).toBe(true)
    expect(seen[0]?.headers['x-correlation']).toBe('c-1')
    expect(response.status).toBe(201)
    expect(response.headers.get('x-upstream')).toBe('yes')
    expect(await response.json()).toMatchObject({ method: 'GET' })
  })

  it('passes a binary body byte for byte, with the method, and merges `query` into the query string', async () => {
    const bytes = new Uint8Array([0, 1, 2, 253, 254, 255, 10, 13])
    const { result: response, route, upstream: seen } = await observe(async () =>
      await client.proxy('kivra', 'v1/files?overwrite=true', { method: 'PUT', body: bytes, query: { name: 'report 1.pdf', tag: 'a&b' } }))
    expect(route).toEqual(['/v1/credentials/kivra/proxy/v1/files?overwrite=true&name=report+1.pdf&tag=a%26b'])
    expect(seen[0]?.method).toBe('PUT')
    expect([...(seen[0]?.body ?? [])]).toEqual([...bytes])
    expect((await response.json() as { body: string }).body).toBe(Buffer.from(bytes).toString('base64'))
  })

  it('keeps a trailing slash, the API base root, and valid percent-escapes as written; a stray % is encoded', async () => {
    const { route } = await observe(async () => {
      for (const path of ['/v1/items/', '/', '', '/v1/a%20b', '/v1/100%', '/v1/caf%C3%A9?x=%41']) await (await client.proxy('kivra', path)).arrayBuffer()
    })
    expect(route).toEqual([
      '/v1/credentials/kivra/proxy/v1/items/',
      '/v1/credentials/kivra/proxy/',
      '/v1/credentials/kivra/proxy/',
      '/v1/credentials/kivra/proxy/v1/a%20b',
      '/v1/credentials/kivra/proxy/v1/100%25',
      '/v1/credentials/kivra/proxy/v1/caf%C3%A9?x=%41'
    ])
  })

  it.each([
    ['a dot-dot segment', '/v1/../../token'],
    ['a leading dot-dot', '../admin/credentials'],
    ['a single dot segment', '/./v1'],
    ['an encoded dot-dot', '/v1/%2e%2e/%2E%2E/token'],
    ['a half-encoded dot-dot', '/v1/.%2E/token'],
    ['an encoded slash', '/v1/a%2Fb'],
    ['an encoded backslash', '/v1/a%5cb'],
    ['a backslash', '/v1\\..\\token'],
    ['a double slash', '/v1//evil'],
    ['a protocol-relative URL', '//evil.example/x'],
    ['an absolute URL', 'https://evil.example/x'],
    ['an absolute URL with another scheme', 'javascript:alert(1)'],
    ['a NUL', '/v1/a\u0000b'],
    ['an encoded NUL', '/v1/a%00b'],
    ['a %-escape that is not UTF-8', '/v1/%aa'],
    ['a line break', '/v1/a\r\nX-Injected: 1'],
    ['a fragment', '/v1/a#b'],
    ['a lone surrogate', '/v1/\uD800']
  ])('refuses %s with CB_CLIENT_INVALID_ARGUMENT, and nothing is sent', async (_name, path) => {
    const { result: err, route, upstream: seen } = await observe(async () => await client.proxy('kivra', path).then(() => undefined, (error: unknown) => error))
    expect(err).toBeInstanceOf(BrokerError)
    expect(err).toMatchObject({ code: 'CB_CLIENT_INVALID_ARGUMENT', status: 0 })
    expect({ route, upstream: seen }).toEqual({ route: [], upstream: [] })
  })

  it('whatever path it is given, what reaches the route is under the prefix and is a path the broker accepts', async () => {
    const alphabet = fc.constantFrom('a', 'b', '.', '/', '%', '2', 'e', 'E', 'f', '5', 'c', '\\', '?', '#', ':', '@', ' ', 'é', '&', '=', '+', ';', '~', '\u0000')
    let accepted = 0
    await fc.assert(fc.asyncProperty(fc.array(alphabet, { maxLength: 16 }).map(chars => chars.join('')), async (path) => {
      const before = broker.requests.length
      const outcome = await client.proxy('kivra', path).then(async response => { await response.arrayBuffer(); return response.status }, (error: unknown) => error)
      if (outcome instanceof BrokerError) {
        expect(outcome.code).toBe('CB_CLIENT_INVALID_ARGUMENT')
        expect(broker.requests.length).toBe(before)
        return
      }
      accepted++
      const url = broker.requests.at(-1)?.url as string
      expect(url.startsWith('/v1/credentials/kivra/proxy/')).toBe(true)
      // The broker refuses escapes (src/proxy/path.ts): anything the client sent passed.
      expect(outcome).toBe(201)
      expect(new URL(url, 'http://x').pathname.startsWith('/v1/credentials/kivra/proxy/')).toBe(true)
    }), { numRuns: 300 })
    expect(accepted).toBeGreaterThan(30)
  })

  it('does not follow an upstream redirect (it would leave the broker): the 3xx comes back as it is', async () => {
    const { result: response } = await observe(async () => await client.proxy('kivra', '/redirect'))
    expect(response.status).toBe(302)
    expect(response.headers.get('location')).toBe('https://elsewhere.example/login')
  })

  it('returns the upstream\'s own problem document as an answer; throws the broker\'s (a CB_ code) as BrokerError', async () => {
    const upstreamProblem = await client.proxy('kivra', '/missing')
    expect(upstreamProblem.status).toBe(404)
    expect(await upstreamProblem.json()).toMatchObject({ code: 'NOT_FOUND' })

    const forbidden = await createBrokerClient({ baseUrl: broker.url, apiKey: otherKey }).proxy('kivra', '/x').then(() => undefined, (error: unknown) => error)
    expect(forbidden).toBeInstanceOf(BrokerError)
    expect(forbidden).toMatchObject({ code: 'CB_FORBIDDEN', status: 403, requestId: expect.stringMatching(/^[0-9a-f-]{36}$/) })
    await expect(client.proxy('nope', '/x')).rejects.toMatchObject({ code: 'CB_CREDENTIAL_NOT_FOUND', status: 404 })
    await expect(client.proxy('kivra-dead', '/x')).rejects.toMatchObject({ code: 'CB_UPSTREAM_UNAVAILABLE', status: 502 })
  })

  it('resolves at the answer\'s headers: the body streams to the caller, it is not buffered first', async () => {
    const response = await client.proxy('kivra', '/slow-body')
    expect(response.status).toBe(200)
    const reader = (response.body as ReadableStream<Uint8Array>).getReader()
    const first = await reader.read()
    expect(new TextDecoder().decode(first.value)).toBe('first-chunk;')
    holdBody?.()
    let rest = ''
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) rest += new TextDecoder().decode(chunk.value)
    expect(rest).toBe('rest')
  })
})
