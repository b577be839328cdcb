import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { inspect } from 'node:util'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { BrokerError, createBrokerClient, type BrokerClient } from '../../client/src/index.js'
import { freePort } from '../support/ports.js'
import { startUpstreamStandIn, type UpstreamStandIn } from './upstream-stand-in.js'
import { keys, startClientWorld, type ClientWorld } from './world.js'

const rejectionsPath = '/v1/credentials/kivra/token/rejections'

/** Kivra's invalid-token answer (providers.md): HTTP 400 with code 40015 in the body or in x-error-code. */
const kivraRejected = async (response: Response): Promise<boolean> => {
  if (response.status !== 400) return false
  if (response.headers.get('x-error-code') === '40015') return true
  const body = await response.json().catch(() => ({})) as { code?: unknown }
  return String(body.code) === '40015'
}

describe('client.fetch', () => {
  let world: ClientWorld
  let upstream: UpstreamStandIn
  let client: BrokerClient
  beforeAll(async () => {
    world = await startClientWorld()
    upstream = await startUpstreamStandIn(world.kivra)
  })
  afterAll(async () => {
    await upstream.close()
    await world.close()
  })
  beforeEach(() => {
    upstream.style = 'unauthorized'
    upstream.rejectAll = false
    client = createBrokerClient({ baseUrl: world.baseUrl, apiKey: keys.service })
  })

  /** The upstream requests and broker rejection reports made while `run` runs. */
  async function observe<T> (run: () => Promise<T>): Promise<{ result: T, upstream: UpstreamStandIn['requests'], reports: number, mints: number }> {
    const requests = upstream.requests.length
    const reports = world.requestsTo(rejectionsPath).length
    const mints = world.kivra.mints
    const result = await run()
    return { result, upstream: upstream.requests.slice(requests), reports: world.requestsTo(rejectionsPath).length - reports, mints: world.kivra.mints - mints }
  }

  it('sends the request with Authorization: Bearer <token> and returns the answer', async () => {
    const { accessToken } = await client.getToken('kivra')
    const { result: response, upstream: seen } = await observe(async () => await client.fetch('kivra', `${upstream.url}/v1/tenants/abc/content?limit=2`, {
      headers: { 'x-custom': 'kept', authorization: 'Bearer the-caller-must-not-override-this' }
    }))
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual({ ok: true, path: '/v1/tenants/abc/content?limit=2' })
    expect(seen).toHaveLength(1)
    expect(seen[0]?.token).toBe(accessToken)
    expect(seen[0]?.headers['x-custom']).toBe('kept')
  })

  it('recovers from one 401: reports the token, the broker mints a new one, the retry carries it (the upstream sees two requests)', async () => {
    const rejected = (await client.getToken('kivra')).accessToken
    upstream.revoke(rejected)
    const body = JSON.stringify({ subject: 'invoice', amount: 1000 })
    const { result: response, upstream: seen, reports, mints } = await observe(async () =>
      await client.fetch('kivra', `${upstream.url}/v1/tenants/abc/content`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }))
    expect(response.status).toBe(200)
    expect(seen).toHaveLength(2)
    const [first, second] = seen
    expect(first?.token).toBe(rejected)
    expect(second?.token).not.toBe(rejected)
    expect(world.kivra.isTokenValid(second?.token as string)).toBe(true)
    expect({ reports, mints }).toEqual({ reports: 1, mints: 1 })
    // The retry is the same request: method, path and body bytes.
    expect(second).toMatchObject({ method: 'POST', url: '/v1/tenants/abc/content' })
    expect(second?.body.toString()).toBe(body)
    expect(first?.body.toString()).toBe(body)
    // The replacement is what the cache holds now: no broker request for the next token.
    const before = world.brokerRequests.length
    expect((await client.getToken('kivra')).accessToken).toBe(second?.token)
    expect(world.brokerRequests.length).toBe(before)
  })

  it('a second 401 is returned as it is: no loop, two upstream requests, one report', async () => {
    await client.getToken('kivra')
    upstream.rejectAll = true
    const { result: response, upstream: seen, reports, mints } = await observe(async () => await client.fetch('kivra', `${upstream.url}/v1/tenants/abc/content`))
    expect(response.status).toBe(401)
    expect(await response.json()).toEqual({ message: 'invalid token' })
    expect(seen).toHaveLength(2)
    expect(seen[0]?.token).not.toBe(seen[1]?.token)
    expect({ reports, mints }).toEqual({ reports: 1, mints: 1 })
  })

  it('isRejected: Kivra\'s 40015 (HTTP 400) counts as a rejection and is recovered from the same way', async () => {
    upstream.style = 'kivra'
    const rejected = (await client.getToken('kivra')).accessToken
    upstream.revoke(rejected)
    const { result: response, upstream: seen, reports } = await observe(async () =>
      await client.fetch('kivra', `${upstream.url}/v1/tenants/abc/content`, { isRejected: kivraRejected }))
    expect(response.status).toBe(200)
    expect(seen.map(request => request.token === rejected)).toEqual([true, false])
    expect(reports).toBe(1)
  })

  it('isRejected reads a copy: an answer it does not call a rejection reaches the caller with its body intact', async () => {
    upstream.style = 'kivra'
    let checked = 0
    const { result: response, upstream: seen, reports } = await observe(async () =>
      await client.fetch('kivra', `${upstream.url}/v1/invalid-content`, { isRejected: async (answer) => { checked++; return await kivraRejected(answer) } }))
    expect(checked).toBe(1)
    expect(response.status).toBe(400)
    expect(await response.json()).toMatchObject({ code: 40000 })
    expect({ requests: seen.length, reports }).toEqual({ requests: 1, reports: 0 })
  })

  it('without isRejected, a Kivra 40015 is just an answer (no report, no retry)', async () => {
    upstream.style = 'kivra'
    upstream.revoke((await client.getToken('kivra')).accessToken)
    const { result: response, upstream: seen, reports } = await observe(async () => await client.fetch('kivra', `${upstream.url}/v1/tenants/abc/content`))
    expect(response.status).toBe(400)
    expect({ requests: seen.length, reports }).toEqual({ requests: 1, reports: 0 })
  })

  it('a stream body is not sent twice: the rejection is reported, the 401 returned, and the next call carries the new token', async () => {
    const rejected = (await client.getToken('kivra')).accessToken
    upstream.revoke(rejected)
    const stream = new ReadableStream<Uint8Array>({
      start (controller) {
        controller.enqueue(new TextEncoder().encode('chunk-1,'))
        controller.enqueue(new TextEncoder().encode('chunk-2'))
        controller.close()
      }
    })
    const streamed = await observe(async () =>
      await client.fetch('kivra', `${upstream.url}/v1/upload`, { method: 'PUT', body: stream, duplex: 'half' } as RequestInit))
    expect(streamed.result.status).toBe(401)
    expect(streamed.upstream).toHaveLength(1)
    expect(streamed.upstream[0]?.body.toString()).toBe('chunk-1,chunk-2')
    expect(streamed.reports).toBe(1)
    const next = await observe(async () => await client.fetch('kivra', `${upstream.url}/v1/upload`, { method: 'PUT', body: 'again' }))
    expect(next.result.status).toBe(200)
    expect(next.upstream.map(request => request.token === rejected)).toEqual([false])
    expect(next.reports).toBe(0)
  })

  it('20 concurrent requests rejected with the same token make one report and are each retried once with the new token', async () => {
    const rejected = (await client.getToken('kivra')).accessToken
    upstream.revoke(rejected)
    const { result: responses, upstream: seen, reports, mints } = await observe(async () =>
      await Promise.all(Array.from({ length: 20 }, async (_, index) => await client.fetch('kivra', `${upstream.url}/v1/items/${index}`))))
    expect(responses.map(response => response.status)).toEqual(Array(20).fill(200))
    expect(seen).toHaveLength(40)
    expect(new Set(seen.filter(request => request.token !== rejected).map(request => request.token)).size).toBe(1)
    expect({ reports, mints }).toEqual({ reports: 1, mints: 1 })
  })

  describe('failures', () => {
    const servers: Server[] = []
    afterAll(async () => {
      for (const server of servers) server.closeAllConnections()
      await Promise.all(servers.map(async server => { await new Promise(resolve => { server.close(resolve) }) }))
    })

    it('an unreachable upstream: CB_CLIENT_NETWORK, and neither the token nor the API key is anywhere in the error', async () => {
      const { accessToken } = await client.getToken('kivra')
      const err = await client.fetch('kivra', `http://127.0.0.1:${await freePort()}/v1/x`).then(() => undefined, (error: unknown) => error)
      expect(err).toBeInstanceOf(BrokerError)
      expect(err).toMatchObject({ code: 'CB_CLIENT_NETWORK', status: 0 })
      const everything = `${String(err)}\n${(err as Error).stack ?? ''}\n${inspect(err, { depth: 20, showHidden: true })}\n${JSON.stringify(err)}`
      expect(everything).not.toContain(accessToken)
      expect(everything).not.toContain(keys.service)
    })

    it('an upstream that never answers: CB_CLIENT_TIMEOUT after timeoutMs', async () => {
      const server = createServer(() => { /* never answers */ })
      servers.push(server)
      await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
      const slow = createBrokerClient({ baseUrl: world.baseUrl, apiKey: keys.service, timeoutMs: 400 })
      await slow.getToken('kivra')
      const started = performance.now()
      const err = await slow.fetch('kivra', `http://127.0.0.1:${(server.address() as AddressInfo).port}/`).then(() => undefined, (error: unknown) => error)
      expect(err).toMatchObject({ code: 'CB_CLIENT_TIMEOUT', status: 0 })
      expect(performance.now() - started).toBeLessThan(3000)
    })

    it('the caller\'s own abort signal rejects with the caller\'s reason, as fetch does', async () => {
      const controller = new AbortController()
      const reason = new Error('the caller gave up')
      controller.abort(reason)
      await expect(client.fetch('kivra', `${upstream.url}/v1/x`, { signal: controller.signal })).rejects.toBe(reason)
    })

    it('a relative URL is refused before anything is sent', async () => {
      const before = upstream.requests.length
      await expect(client.fetch('kivra', '/v1/x')).rejects.toMatchObject({ code: 'CB_CLIENT_INVALID_ARGUMENT' })
      expect(upstream.requests.length).toBe(before)
    })
  })
})
