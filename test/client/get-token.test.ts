import { readFile, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BrokerError, cacheMarginSeconds, createBrokerClient } from '../../client/src/index.js'
import { freePort } from '../support/ports.js'
import { tempFile } from '../support/app.js'
import { keys, startClientWorld, type ClientWorld } from './world.js'

const tokenPath = (id: string): string => `/v1/credentials/${id}/token`

async function caught (promise: Promise<unknown>): Promise<BrokerError> {
  const err = await promise.then(() => undefined, (error: unknown) => error)
  expect(err).toBeInstanceOf(BrokerError)
  return err as BrokerError
}

describe('client.getToken against the real broker', () => {
  let world: ClientWorld
  beforeAll(async () => { world = await startClientWorld() })
  afterAll(async () => { await world.close() })

  const newClient = (options: { maxRetryWaitSeconds?: number } = {}) => createBrokerClient({ baseUrl: world.baseUrl, apiKey: keys.service, ...options })

  describe('caching and sharing', () => {
    it('100 concurrent calls for one credential make exactly one broker request, and all get the same valid token', async () => {
      const client = newClient()
      const before = world.requestsTo(tokenPath('kivra')).length
      const tokens = await Promise.all(Array.from({ length: 100 }, async () => await client.getToken('kivra', { minTtl: 600 })))
      expect(world.requestsTo(tokenPath('kivra')).length - before).toBe(1)
      expect(world.requestsTo(tokenPath('kivra')).at(-1)?.url).toBe('/v1/credentials/kivra/token?min_ttl=600')
      expect(new Set(tokens.map(token => token.accessToken)).size).toBe(1)
      const [token] = tokens
      expect(world.kivra.isTokenValid(token?.accessToken as string)).toBe(true)
      expect(token).toMatchObject({ tokenType: 'Bearer', scope: expect.any(String) })
      expect(token?.expiresIn).toBeGreaterThanOrEqual(600)
      // expiresAt is on this host's clock and never later than the provider's expiry.
      const providerExpiry = world.kivra.tokenInfo(token?.accessToken as string)?.expiresAt as number
      expect(token?.expiresAt).toBeInstanceOf(Date)
      expect(token?.expiresAt.getTime()).toBeLessThanOrEqual(providerExpiry)
      expect(providerExpiry - (token?.expiresAt.getTime() as number)).toBeLessThan(5000)
    })

    it('a cached token with enough life is served with no broker request', async () => {
      const client = newClient()
      const first = await client.getToken('kivra', { minTtl: 600 })
      const before = world.brokerRequests.length
      const again = await Promise.all([client.getToken('kivra', { minTtl: 600 }), client.getToken('kivra', { minTtl: 3600 }), client.getToken('kivra')])
      expect(world.brokerRequests.length).toBe(before)
      expect(again.map(token => token.accessToken)).toEqual([first.accessToken, first.accessToken, first.accessToken])
      // A cached token reports the time it has left now, not the figure of the answer it came in.
      expect(again[0]?.expiresIn).toBeLessThanOrEqual(first.expiresIn)
      expect(again[0]?.expiresAt.getTime()).toBe(first.expiresAt.getTime())
    })

    it('a minTtl the cached token cannot cover (with the margin) makes a new broker request, with that min_ttl', async () => {
      // kivra-short tokens live 20 s: one with 14 s or more left is still cached for minTtl 5 (needs 5 + 5 s), none for 16 (needs 21 s).
      expect(cacheMarginSeconds).toBe(5)
      const client = newClient()
      const before = world.requestsTo(tokenPath('kivra-short')).length
      const first = await client.getToken('kivra-short', { minTtl: 14 })
      expect(first.expiresIn).toBeGreaterThanOrEqual(14)
      const cached = await client.getToken('kivra-short', { minTtl: 5 })
      expect(cached.accessToken).toBe(first.accessToken)
      expect(world.requestsTo(tokenPath('kivra-short')).length - before).toBe(1)
      const longer = await client.getToken('kivra-short', { minTtl: 16 })
      const requests = world.requestsTo(tokenPath('kivra-short')).slice(before)
      expect(requests.map(request => request.url)).toEqual(['/v1/credentials/kivra-short/token?min_ttl=14', '/v1/credentials/kivra-short/token?min_ttl=16'])
      expect(longer.expiresIn).toBeGreaterThanOrEqual(16)
      expect(world.kivraShort.isTokenValid(longer.accessToken)).toBe(true)
    })

    it('concurrent calls share a request only with calls of the same minTtl', async () => {
      const client = newClient()
      const before = world.requestsTo(tokenPath('kivra')).length
      await Promise.all([
        ...Array.from({ length: 50 }, async () => await client.getToken('kivra', { minTtl: 60 })),
        ...Array.from({ length: 50 }, async () => await client.getToken('kivra', { minTtl: 120 }))
      ])
      const urls = world.requestsTo(tokenPath('kivra')).slice(before).map(request => request.url).sort()
      expect(urls).toEqual(['/v1/credentials/kivra/token?min_ttl=120', '/v1/credentials/kivra/token?min_ttl=60'])
    })
  })

  describe('a broker 503 with Retry-After', () => {
    it('is retried once after the delay, and the retry gets the token', async () => {
      const client = newClient()
      const path = tokenPath('kivra-flaky')
      const before = world.requestsTo(path).length
      // The provider recovers the moment the broker has answered the first 503.
      world.onAnswered(request => {
        if (request.url.startsWith(path) && request.status === 503) world.kivraFlaky.clearFaults()
      })
      try {
        const token = await client.getToken('kivra-flaky', { minTtl: 60 })
        expect(world.kivraFlaky.isTokenValid(token.accessToken)).toBe(true)
      } finally {
        world.onAnswered(undefined)
      }
      const requests = world.requestsTo(path).slice(before)
      expect(requests.map(request => request.status)).toEqual([503, 200])
      // The broker said Retry-After: 1 (see world.ts); the client waited it out.
      expect((requests[1]?.at as number) - (requests[0]?.at as number)).toBeGreaterThanOrEqual(950)
    })

    it('still failing after the retry: throws the broker problem, two requests in all', async () => {
      const client = newClient()
      const path = tokenPath('kivra-down')
      const before = world.requestsTo(path).length
      const started = performance.now()
      const err = await caught(client.getToken('kivra-down'))
      const requests = world.requestsTo(path).slice(before)
      expect(requests.map(request => request.status)).toEqual([503, 503])
      expect(performance.now() - started).toBeGreaterThanOrEqual(950)
      expect(err).toMatchObject({ code: 'CB_PROVIDER_UNAVAILABLE', status: 503, requestId: requests[1]?.requestId })
      expect(err.retryAfter).toBeGreaterThanOrEqual(1)
      expect(err.message).toContain('CB_PROVIDER_UNAVAILABLE')
    })

    it('is not waited out when Retry-After is longer than maxRetryWaitSeconds: one request, thrown at once', async () => {
      const client = newClient({ maxRetryWaitSeconds: 0 })
      const path = tokenPath('kivra-down')
      const before = world.requestsTo(path).length
      const err = await caught(client.getToken('kivra-down'))
      expect(world.requestsTo(path).length - before).toBe(1)
      expect(err).toMatchObject({ code: 'CB_PROVIDER_UNAVAILABLE', status: 503, retryAfter: 1 })
    })
  })

  describe('errors', () => {
    it('a caller the credential does not list: CB_FORBIDDEN with the broker request id, no retry', async () => {
      const client = createBrokerClient({ baseUrl: world.baseUrl, apiKey: keys.other })
      const before = world.brokerRequests.length
      const err = await caught(client.getToken('kivra'))
      const seen = world.brokerRequests.slice(before)
      expect(seen).toHaveLength(1)
      expect(err).toMatchObject({ code: 'CB_FORBIDDEN', status: 403, requestId: seen[0]?.requestId, retryAfter: undefined, clientSide: false })
      expect(err.requestId).toMatch(/^[0-9a-f-]{36}$/)
    })

    it('an unknown API key: CB_UNAUTHENTICATED; an unknown credential: CB_CREDENTIAL_NOT_FOUND', async () => {
      const stranger = createBrokerClient({ baseUrl: world.baseUrl, apiKey: 'not-a-key-the-broker-knows' })
      expect(await caught(stranger.getToken('kivra'))).toMatchObject({ code: 'CB_UNAUTHENTICATED', status: 401 })
      expect(await caught(newClient().getToken('nope'))).toMatchObject({ code: 'CB_CREDENTIAL_NOT_FOUND', status: 404 })
    })

    it('a minTtl above the credential lifetime: the broker says CB_BAD_REQUEST', async () => {
      expect(await caught(newClient().getToken('kivra', { minTtl: 28_801 }))).toMatchObject({ code: 'CB_BAD_REQUEST', status: 400 })
    })

    it.each([
      ['a credential id with a dot segment', '..', undefined],
      ['a credential id with a slash', 'kivra/../admin', undefined],
      ['an upper-case id', 'Kivra', undefined],
      ['a negative minTtl', 'kivra', -1],
      ['a fractional minTtl', 'kivra', 1.5]
    ])('%s is refused before anything is sent', async (_name, id, minTtl) => {
      const before = world.brokerRequests.length
      const err = await caught(newClient().getToken(id, { minTtl }))
      expect(err).toMatchObject({ code: 'CB_CLIENT_INVALID_ARGUMENT', status: 0, clientSide: true })
      expect(world.brokerRequests.length).toBe(before)
    })
  })

  describe('caller authentication with a token function', () => {
    it('reads the token on every call (a projected token file that is rotated)', async () => {
      const file = tempFile('broker-token', `${keys.service}\n`)
      let reads = 0
      const client = createBrokerClient({ baseUrl: world.baseUrl, token: async () => { reads++; return await readFile(file, 'utf8') } })
      const signed = await client.sign('sir', { method: 'GET', path: '/v1/partner/pools' })
      expect(Object.keys(signed).sort()).toEqual(['X-Partner-Key', 'X-Signature', 'X-Timestamp'])
      // Rotated to another caller's token: the next call carries it, and that caller is not on the policy.
      await writeFile(file, keys.other)
      expect(await caught(client.sign('sir', { method: 'GET', path: '/v1/partner/pools' }))).toMatchObject({ code: 'CB_FORBIDDEN' })
      expect(reads).toBe(2)
    })

    it('a token function that throws or returns nothing: CB_CLIENT_CALLER_TOKEN, nothing sent', async () => {
      const before = world.brokerRequests.length
      const throwing = createBrokerClient({ baseUrl: world.baseUrl, token: () => { throw new Error('no such file') } })
      const empty = createBrokerClient({ baseUrl: world.baseUrl, token: async () => '  \n' })
      expect(await caught(throwing.getToken('kivra'))).toMatchObject({ code: 'CB_CLIENT_CALLER_TOKEN', status: 0 })
      expect(await caught(empty.getToken('kivra'))).toMatchObject({ code: 'CB_CLIENT_CALLER_TOKEN', status: 0 })
      expect(world.brokerRequests.length).toBe(before)
    })
  })
})

describe('client.getToken when there is no broker answer', () => {
  const servers: Server[] = []
  afterAll(async () => {
    for (const server of servers) server.closeAllConnections()
    await Promise.all(servers.map(async server => { await new Promise(resolve => { server.close(resolve) }) }))
  })
  const listen = async (handler: Parameters<typeof createServer>[1]): Promise<string> => {
    const server = createServer(handler)
    servers.push(server)
    await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  }

  it('nothing listening: CB_CLIENT_NETWORK, status 0', async () => {
    const client = createBrokerClient({ baseUrl: `http://127.0.0.1:${await freePort()}`, apiKey: keys.service })
    const err = await caught(client.getToken('kivra'))
    expect(err).toMatchObject({ code: 'CB_CLIENT_NETWORK', status: 0 })
    expect(err.message).toContain('ECONNREFUSED')
  })

  it('a server that never answers: CB_CLIENT_TIMEOUT after timeoutMs', async () => {
    const baseUrl = await listen(() => { /* never answers */ })
    const client = createBrokerClient({ baseUrl, apiKey: keys.service, timeoutMs: 300 })
    const started = performance.now()
    const err = await caught(client.getToken('kivra'))
    const elapsed = performance.now() - started
    expect(err).toMatchObject({ code: 'CB_CLIENT_TIMEOUT', status: 0 })
    expect(elapsed).toBeGreaterThanOrEqual(290)
    expect(elapsed).toBeLessThan(3000)
  })

  it('something that is not the broker (an HTML 502 from an ingress): CB_CLIENT_BAD_RESPONSE with the status', async () => {
    const baseUrl = await listen((_req, res) => { res.writeHead(502, { 'content-type': 'text/html' }).end('<h1>Bad Gateway</h1>') })
    const err = await caught(createBrokerClient({ baseUrl, apiKey: keys.service }).getToken('kivra'))
    expect(err).toMatchObject({ code: 'CB_CLIENT_BAD_RESPONSE', status: 502 })
  })

  it('a redirect is not followed: the caller key stays with the broker', async () => {
    let followed = 0
    const elsewhere = await listen((_req, res) => { followed++; res.end('{}') })
    const baseUrl = await listen((_req, res) => { res.writeHead(307, { location: `${elsewhere}/v1/credentials/kivra/token` }).end() })
    const err = await caught(createBrokerClient({ baseUrl, apiKey: keys.service }).getToken('kivra'))
    expect(err).toMatchObject({ code: 'CB_CLIENT_BAD_RESPONSE', status: 307 })
    expect(followed).toBe(0)
  })

  it('bad options are refused when the client is created', () => {
    for (const options of [
      { baseUrl: 'not a url', apiKey: 'k' },
      { baseUrl: 'ftp://broker', apiKey: 'k' },
      { baseUrl: 'http://broker?x=1', apiKey: 'k' },
      { baseUrl: 'http://broker', apiKey: 'with space' },
      { baseUrl: 'http://broker', apiKey: 'k', timeoutMs: 0 },
      { baseUrl: 'http://broker' }
    ]) {
      expect(() => createBrokerClient(options as Parameters<typeof createBrokerClient>[0]), JSON.stringify(options)).toThrow(BrokerError)
    }
  })
})
