/**
 * "Token rejected" handled by the proxy: an upstream 401, or Kivra's invalid-token answer (HTTP 400 with
 * code 40015 in the body, as a number or a string, or in `x-error-code`), on a token credential → one
 * refresh through the deduplicated rejection path → the request sent once more with the new token → that
 * answer, whatever it is. Nothing else is retried; SIR Giving never is.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { fingerprint } from '../../src/broker/grant-identity.js'
import type { RejectionStyle } from './api-stand-in.js'
import { keys, send, startProxyWorld, type ProxyWorld } from './world.js'

const auth = { authorization: `Bearer ${keys.service}` }

describe('ANY /v1/credentials/:id/proxy/*: token rejections', () => {
  let world: ProxyWorld
  beforeAll(async () => { world = await startProxyWorld() })
  afterAll(async () => { await world.close() })
  beforeEach(() => {
    world.api.style = 'unauthorized'
    world.api.rejectAll = false
  })

  /** The token the broker injects for "kivra" right now (one proxied request shows it). */
  async function currentToken (): Promise<string> {
    await send(world.port, { path: '/v1/credentials/kivra/proxy/v1/echo', headers: auth })
    return world.api.requests.at(-1)?.token as string
  }

  async function upstreamDuring<T> (run: () => Promise<T>): Promise<{ result: T, seen: ProxyWorld['api']['requests'] }> {
    const before = world.api.requests.length
    const result = await run()
    return { result, seen: world.api.requests.slice(before) }
  }

  it.each<[string, RejectionStyle]>([
    ['a 401', 'unauthorized'],
    ['Kivra\'s 400 with code 40015 as a number', 'kivra-body-number'],
    ['Kivra\'s 400 with code "40015" as a string', 'kivra-body-string'],
    ['Kivra\'s 400 with x-error-code: 40015', 'kivra-header'],
    ['Kivra\'s 400 with code 40015 in a gzip body (the caller accepts gzip)', 'kivra-body-gzip']
  ])('%s: one refresh, then the same request once more with the new token', async (_name, style) => {
    world.api.style = style
    const rejected = await currentToken()
    world.api.revoke(rejected)
    const mints = world.kivra.mints
    const body = Buffer.from('{"content":"sent twice, the same bytes"}')
    const { result: answer, seen } = await upstreamDuring(async () => await send(world.port, {
      method: 'POST', path: '/v1/credentials/kivra/proxy/v1/echo?q=1', headers: { ...auth, 'content-type': 'application/json', 'accept-encoding': 'gzip, deflate, br' }, body
    }))
    expect(answer.status).toBe(201)
    expect(seen).toHaveLength(2)
    expect(seen[0]?.token).toBe(rejected)
    expect(seen[1]?.token).not.toBe(rejected)
    expect(world.kivra.isTokenValid(seen[1]?.token as string)).toBe(true)
    expect(seen.map(request => [request.method, request.url, request.body.toString()])).toEqual([
      ['POST', '/api/v1/echo?q=1', body.toString()], ['POST', '/api/v1/echo?q=1', body.toString()]
    ])
    expect(world.kivra.mints).toBe(mints + 1)
    const audit = world.testApp.logs.entries().find(entry => entry.msg === 'request proxied' && entry.reqId === answer.headers['x-request-id'])
    expect(audit).toMatchObject({ attempts: 2, status: 201, fingerprint: fingerprint(seen[1]?.token as string) })
  })

  it('concurrent requests rejected with the same token share one refresh', async () => {
    world.api.revoke(await currentToken())
    const mints = world.kivra.mints
    const answers = await Promise.all(Array.from({ length: 5 }, async () => await send(world.port, { path: '/v1/credentials/kivra/proxy/v1/echo', headers: auth })))
    expect(answers.map(answer => answer.status)).toEqual([201, 201, 201, 201, 201])
    expect(world.kivra.mints).toBe(mints + 1)
  })

  it.each<[string, RejectionStyle, number, string]>([
    ['a 401', 'unauthorized', 401, '"invalid token"'],
    ['Kivra\'s 40015', 'kivra-body-number', 400, '"code":40015']
  ])('the second answer goes back whatever it is (%s again): exactly two requests', async (_name, style, status, bodyPart) => {
    world.api.style = style
    await currentToken()
    world.api.rejectAll = true
    const mints = world.kivra.mints
    const { result: answer, seen } = await upstreamDuring(async () => await send(world.port, { path: '/v1/credentials/kivra/proxy/v1/echo', headers: auth }))
    expect(answer.status).toBe(status)
    expect(answer.body.toString()).toContain(bodyPart)
    expect(seen).toHaveLength(2)
    expect(seen[0]?.token).not.toBe(seen[1]?.token)
    expect(world.kivra.mints).toBe(mints + 1)
  })

  it.each([
    ['a 403', '/v1/forbidden', 403, '{"message":"not yours"}'],
    ['a Kivra 400 that is not about the token (40000)', '/v1/kivra-other', 400, '{"code":40000,"short_message":"bad request"}']
  ])('no retry for %s: one request, the answer passed on byte for byte', async (_name, path, status, body) => {
    world.api.style = 'kivra-body-number'
    const mints = world.kivra.mints
    const { result: answer, seen } = await upstreamDuring(async () => await send(world.port, { path: `/v1/credentials/kivra/proxy${path}`, headers: auth }))
    expect(answer.status).toBe(status)
    expect(answer.body.toString()).toBe(body)
    expect(seen).toHaveLength(1)
    expect(world.kivra.mints).toBe(mints)
  })

  it('no retry for SIR Giving: its 401 goes back after one request', async () => {
    const before = world.sir.requests.length
    const answer = await send(world.port, { path: '/v1/credentials/sir-wrong/proxy/v1/partner/pools', headers: auth })
    expect(answer.status).toBe(401)
    expect(world.sir.requests.length).toBe(before + 1)
  })
})
