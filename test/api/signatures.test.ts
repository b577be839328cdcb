import { createHash, createHmac } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bearer, expectProblem, keys, startApiWorld, type ApiWorld } from './world.js'

const sha256Hex = (body: string): string => createHash('sha256').update(body, 'utf8').digest('hex')

describe('POST /v1/credentials/:id/signatures', () => {
  let world: ApiWorld
  beforeAll(async () => { world = await startApiWorld() })
  afterAll(async () => { await world.close() })

  const sign = async (id: string, payload: unknown, headers: Record<string, string> = bearer(keys.service)) =>
    await world.testApp.app.inject({ method: 'POST', url: `/v1/credentials/${id}/signatures`, headers, payload: payload as string })

  describe('200', () => {
    it.each([
      ['a POST with a JSON body', 'post', '/v1/partner/donations?campaign=42&currency=USD', '{"amount":1000,"idempotencyKey":"abc-1"}'],
      ['a GET with an empty body', 'GET', '/v1/partner/pools/7', '']
    ])('signs %s exactly as docs/providers.md describes, and SIR Giving accepts the request', async (_name, method, path, body) => {
      const before = Math.floor(Date.now() / 1000)
      const response = await sign('sir', { method, path, body_sha256: sha256Hex(body) })
      const after = Math.floor(Date.now() / 1000)
      expect(response.statusCode).toBe(200)
      expect(response.headers['cache-control']).toBe('no-store')
      const { headers } = response.json<{ headers: Record<string, string> }>()
      expect(Object.keys(headers).sort()).toEqual(['X-Partner-Key', 'X-Signature', 'X-Timestamp'])
      const timestamp = Number(headers['X-Timestamp'])
      expect(timestamp).toBeGreaterThanOrEqual(before)
      expect(timestamp).toBeLessThanOrEqual(after)
      expect(headers['X-Partner-Key']).toBe(world.standIns.sir.secret.secretKey)
      // Computed here from the documented formula: timestamp + METHOD + pathWithQuery + hex(sha256(body)), keyed with hmacSecret.
      const expected = createHmac('sha256', world.standIns.sir.secret.hmacSecret as string)
        .update(`${headers['X-Timestamp']}${method.toUpperCase()}${path}${sha256Hex(body)}`)
        .digest('hex')
      expect(headers['X-Signature']).toBe(expected)

      // And the stand-in, which checks signatures as SIR Giving does, accepts the signed request.
      const accepted = world.standIns.sir.acceptedCalls
      const sent = await fetch(`${world.standIns.sir.url}${path}`, { method: method.toUpperCase(), headers, body: body === '' ? undefined : body })
      expect(sent.status).toBe(200)
      expect(world.standIns.sir.acceptedCalls).toBe(accepted + 1)
    })

    it('never includes hmacSecret', async () => {
      const response = await sign('sir', { method: 'GET', path: '/', body_sha256: sha256Hex('') })
      expect(response.body).not.toContain(world.standIns.sir.secret.hmacSecret as string)
    })
  })

  describe('400', () => {
    it.each([
      ['a missing field', { method: 'GET', path: '/' }],
      ['a method with digits', { method: 'G3T', path: '/', body_sha256: sha256Hex('') }],
      ['a path without a leading slash', { method: 'GET', path: 'v1/partner', body_sha256: sha256Hex('') }],
      ['a path with a space', { method: 'GET', path: '/v1/partner x', body_sha256: sha256Hex('') }],
      ['a short body_sha256', { method: 'GET', path: '/', body_sha256: 'abc' }],
      ['an extra field', { method: 'GET', path: '/', body_sha256: sha256Hex(''), body: 'raw' }]
    ])('for %s', async (_name, payload) => {
      expectProblem(await sign('sir', payload), 400, 'CB_BAD_REQUEST')
    })
  })

  it('401 without caller credentials', async () => {
    expectProblem(await sign('sir', { method: 'GET', path: '/', body_sha256: sha256Hex('') }, {}), 401, 'CB_UNAUTHENTICATED')
  })

  it('403 for a caller the credential does not list', async () => {
    expectProblem(await sign('sir', { method: 'GET', path: '/', body_sha256: sha256Hex('') }, bearer(keys.other)), 403, 'CB_FORBIDDEN')
  })

  it('404 for an unknown credential', async () => {
    expectProblem(await sign('nope', { method: 'GET', path: '/', body_sha256: sha256Hex('') }), 404, 'CB_CREDENTIAL_NOT_FOUND')
  })

  it('409 for a token credential', async () => {
    const problem = expectProblem(await sign('kivra', { method: 'GET', path: '/', body_sha256: sha256Hex('') }), 409, 'CB_UNSUPPORTED_OPERATION')
    expect(problem.detail).toContain('/token')
  })

  it('413 for a body over the limit', async () => {
    const payload = JSON.stringify({ method: 'GET', path: `/${'x'.repeat(3 * 1024 * 1024)}`, body_sha256: sha256Hex('') })
    expectProblem(await sign('sir', payload, { ...bearer(keys.service), 'content-type': 'application/json' }), 413, 'CB_PAYLOAD_TOO_LARGE')
  })

  it('415 for a body that is not JSON', async () => {
    expectProblem(await sign('sir', 'GET /', { ...bearer(keys.service), 'content-type': 'text/plain' }), 415, 'CB_UNSUPPORTED_MEDIA_TYPE')
  })

  it('502 when the held secret cannot sign (no secretKey)', async () => {
    const response = await sign('sir-incomplete', { method: 'GET', path: '/', body_sha256: sha256Hex('') })
    expectProblem(response, 502, 'CB_PROVIDER_REJECTED_CREDENTIALS')
    expect(response.body).not.toContain(world.standIns.sir.secret.hmacSecret as string)
  })

  it('503 when the secret cannot be read', async () => {
    const response = await sign('sir-missing-secret', { method: 'GET', path: '/', body_sha256: sha256Hex('') })
    expectProblem(response, 503, 'CB_SECRET_UNAVAILABLE')
  })
})
