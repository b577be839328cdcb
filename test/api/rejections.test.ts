import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { bearer, expectProblem, keys, startApiWorld, type ApiWorld } from './world.js'
import { waitFor } from '../support/wait.js'

interface TokenBody { access_token: string, expires_in: number }

describe('POST /v1/credentials/:id/token/rejections', () => {
  let world: ApiWorld
  beforeAll(async () => { world = await startApiWorld() })
  afterAll(async () => { await world.close() })

  const report = async (id: string, payload: unknown, headers: Record<string, string> = bearer(keys.service)) =>
    await world.testApp.app.inject({ method: 'POST', url: `/v1/credentials/${id}/token/rejections`, headers, payload: payload as string })
  const current = async (id: string): Promise<string> => {
    const response = await world.testApp.app.inject({ url: `/v1/credentials/${id}/token`, headers: bearer(keys.service) })
    expect(response.statusCode).toBe(200)
    return response.json<TokenBody>().access_token
  }

  describe('200', () => {
    beforeEach(async () => {
      // The start-up refresh has run (or is joined here), so mint counts below are only ours.
      await current('kivra')
      await waitFor('the start-up mint', () => world.standIns.kivra.mints >= 1)
    })

    it('reporting the current token mints exactly once and answers the new token (no-store)', async () => {
      const rejected = await current('kivra')
      const mints = world.standIns.kivra.mints
      const response = await report('kivra', { access_token: rejected })
      expect(response.statusCode).toBe(200)
      expect(response.headers['cache-control']).toBe('no-store')
      const fresh = response.json<TokenBody>().access_token
      expect(fresh).not.toBe(rejected)
      expect(world.standIns.kivra.isTokenValid(fresh)).toBe(true)
      expect(world.standIns.kivra.mints).toBe(mints + 1)
      // The new token is what everyone gets now.
      expect(await current('kivra')).toBe(fresh)
    })

    it('20 concurrent reports of the same token cause one mint, and all answer the same new token', async () => {
      const rejected = await current('kivra')
      const mints = world.standIns.kivra.mints
      const responses = await Promise.all(Array.from({ length: 20 }, async () => await report('kivra', { access_token: rejected })))
      expect(responses.map(response => response.statusCode)).toEqual(Array(20).fill(200))
      const answers = new Set(responses.map(response => response.json<TokenBody>().access_token))
      expect(answers.size).toBe(1)
      expect(answers.has(rejected)).toBe(false)
      expect(world.standIns.kivra.mints).toBe(mints + 1)
    })

    it('reporting an old token again (20 times at once) does not mint again: it was already replaced', async () => {
      const old = await current('kivra')
      const first = await report('kivra', { access_token: old })
      const replacement = first.json<TokenBody>().access_token
      const mints = world.standIns.kivra.mints
      const responses = await Promise.all(Array.from({ length: 20 }, async () => await report('kivra', { access_token: old })))
      expect(responses.every(response => response.statusCode === 200 && response.json<TokenBody>().access_token === replacement)).toBe(true)
      expect(world.standIns.kivra.mints).toBe(mints)
    })

    it('reporting a token the broker never issued answers the current token without a mint', async () => {
      const held = await current('kivra')
      const mints = world.standIns.kivra.mints
      const response = await report('kivra', { access_token: 'kivra_never-issued-by-anyone' })
      expect(response.statusCode).toBe(200)
      expect(response.json<TokenBody>().access_token).toBe(held)
      expect(world.standIns.kivra.mints).toBe(mints)
    })

    it('mints a new Klavi token for a rejected one: its refresh endpoint would present the rejected token', async () => {
      const rejected = await current('klavi')
      const { refreshes, mints } = world.standIns.klavi
      const response = await report('klavi', { access_token: rejected })
      expect(response.statusCode).toBe(200)
      const fresh = response.json<TokenBody>().access_token
      expect(fresh).not.toBe(rejected)
      expect(world.standIns.klavi.tokenInfo(fresh)?.endpoint).toBe('mint')
      expect({ refreshes: world.standIns.klavi.refreshes, mints: world.standIns.klavi.mints }).toEqual({ refreshes, mints: mints + 1 })
    })
  })

  describe('400', () => {
    it.each([
      ['an empty object', {}],
      ['an empty token', { access_token: '' }],
      ['a number', { access_token: 42 }],
      ['an extra field', { access_token: 'x', credential: 'kivra' }],
      ['an array', [{ access_token: 'x' }]]
    ])('for %s', async (_name, payload) => {
      expectProblem(await report('kivra', payload), 400, 'CB_BAD_REQUEST')
    })

    it('for malformed JSON', async () => {
      expectProblem(await report('kivra', '{"access_token":', { ...bearer(keys.service), 'content-type': 'application/json' }), 400, 'CB_BAD_REQUEST')
    })

    it('for a missing body', async () => {
      expectProblem(await world.testApp.app.inject({ method: 'POST', url: '/v1/credentials/kivra/token/rejections', headers: bearer(keys.service) }), 400, 'CB_BAD_REQUEST')
    })
  })

  it('401 without caller credentials', async () => {
    expectProblem(await report('kivra', { access_token: 'x' }, {}), 401, 'CB_UNAUTHENTICATED')
    expectProblem(await report('kivra', { access_token: 'x' }, bearer('wrong')), 401, 'CB_UNAUTHENTICATED')
  })

  it('403 for a caller the credential does not list, and for a front-end caller', async () => {
    expectProblem(await report('kivra', { access_token: 'x' }, bearer(keys.other)), 403, 'CB_FORBIDDEN')
    expectProblem(await report('kivra', { access_token: 'x' }, bearer(keys.frontend)), 403, 'CB_FORBIDDEN')
  })

  it('404 for an unknown credential', async () => {
    expectProblem(await report('nope', { access_token: 'x' }), 404, 'CB_CREDENTIAL_NOT_FOUND')
  })

  it('409 for a signing credential', async () => {
    expectProblem(await report('sir', { access_token: 'x' }), 409, 'CB_UNSUPPORTED_OPERATION')
  })

  it('413 for a body over the limit', async () => {
    const response = await report('kivra', JSON.stringify({ access_token: 'x'.repeat(3 * 1024 * 1024) }), { ...bearer(keys.service), 'content-type': 'application/json' })
    expectProblem(response, 413, 'CB_PAYLOAD_TOO_LARGE')
  })

  it('415 for a body that is not JSON', async () => {
    expectProblem(await report('kivra', 'access_token=x', { ...bearer(keys.service), 'content-type': 'application/x-www-form-urlencoded' }), 415, 'CB_UNSUPPORTED_MEDIA_TYPE')
  })

  it('502 when the provider rejects the client credentials', async () => {
    expectProblem(await report('kivra-rejecting', { access_token: 'x' }), 502, 'CB_PROVIDER_REJECTED_CREDENTIALS')
  })

  it('503 with Retry-After when the provider is down', async () => {
    const response = await report('kigo-down', { access_token: 'x' })
    expectProblem(response, 503, 'CB_PROVIDER_UNAVAILABLE')
    expect(Number(response.headers['retry-after'])).toBeGreaterThanOrEqual(1)
  })
})
