import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bearer, expectProblem, keys, startApiWorld, type ApiWorld } from './world.js'
import { waitFor } from '../support/wait.js'

describe('GET /v1/credentials/:id/token', () => {
  let world: ApiWorld
  beforeAll(async () => { world = await startApiWorld() })
  afterAll(async () => { await world.close() })

  const token = async (id: string, query = '', headers: Record<string, string> = bearer(keys.service)) =>
    await world.testApp.app.inject({ url: `/v1/credentials/${id}/token${query}`, headers })

  describe('200', () => {
    it.each([
      ['kivra', 'kivra', '?min_ttl=3600'],
      ['kigo', 'kigo', '?min_ttl=600'],
      ['klavi', 'klavi', '?min_ttl=600'],
      ['oauth2-short', 'oauth2', '?min_ttl=50']
    ] as const)('answers a %s token the provider accepts, with at least min_ttl left and Cache-Control: no-store', async (id, standIn, query) => {
      const response = await token(id, query)
      expect(response.statusCode).toBe(200)
      expect(response.headers['content-type']).toMatch(/^application\/json/)
      expect(response.headers['cache-control']).toBe('no-store')
      const body = response.json<{ access_token: string, token_type: string, expires_at: string, expires_in: number, scope?: string }>()
      expect(Object.keys(body).sort()).toEqual(expect.arrayContaining(['access_token', 'expires_at', 'expires_in', 'token_type']))
      expect(world.standIns[standIn].isTokenValid(body.access_token)).toBe(true)
      const minTtl = Number(query.split('=')[1])
      expect(body.expires_in).toBeGreaterThanOrEqual(minTtl)
      expect(Math.abs(Date.parse(body.expires_at) - Date.now() - body.expires_in * 1000)).toBeLessThan(2000)
    })

    it('uses min_ttl=60 when none is given, and serves the held grant without another mint', async () => {
      await token('kigo')
      const mints = world.standIns.kigo.mints
      const response = await token('kigo')
      expect(response.statusCode).toBe(200)
      expect(response.json<{ expires_in: number }>().expires_in).toBeGreaterThanOrEqual(60)
      expect(world.standIns.kigo.mints).toBe(mints)
    })

    it('accepts min_ttl=0 and min_ttl equal to the documented lifetime bound', async () => {
      expect((await token('kivra', '?min_ttl=0')).statusCode).toBe(200)
      // 28 800 s is Kivra's documented lifetime: allowed as a bound, and a fresh grant may satisfy it only
      // at the instant of minting, so the broker either answers it or says it cannot (never 400).
      expect([200, 422]).toContain((await token('kivra', '?min_ttl=28800')).statusCode)
    })

    it('hands a non-backend-only credential to a front-end caller', async () => {
      const response = await token('oauth2-short', '?min_ttl=10', bearer(keys.frontend))
      expect(response.statusCode).toBe(200)
    })
  })

  describe('400', () => {
    it.each([
      ['?min_ttl=-1'], ['?min_ttl=abc'], ['?min_ttl=1.5'], ['?min_ttl='], ['?min_ttl=0x10'], ['?min_ttl=1e3'],
      ['?min_ttl=90000'], ['?min_ttl=1&min_ttl=2']
    ])('rejects %s naming the query field', async (query) => {
      const problem = expectProblem(await token('kivra', query), 400, 'CB_BAD_REQUEST')
      expect(problem.errors).toEqual([expect.objectContaining({ path: 'querystring.min_ttl' })])
    })

    it('rejects a min_ttl above the credential lifetime', async () => {
      const problem = expectProblem(await token('kivra', '?min_ttl=28801'), 400, 'CB_BAD_REQUEST')
      expect(problem.detail).toContain('28800')
      expectProblem(await token('kigo-other', '?min_ttl=1701', bearer(keys.other)), 400, 'CB_BAD_REQUEST')
    })

    it.each([
      ['a malformed percent-encoding', '%zz'],
      ['a path parameter longer than Fastify allows', 'a'.repeat(150)]
    ])('rejects %s as problem+json (a routing error, before any handler)', async (_name, id) => {
      expectProblem(await token(id), 400, 'CB_BAD_REQUEST')
    })

    it('rejects a malformed credential id', async () => {
      const problem = expectProblem(await token('Not_An-Id!'), 400, 'CB_BAD_REQUEST')
      expect(problem.errors).toEqual([expect.objectContaining({ path: 'params.id' })])
    })
  })

  describe('401', () => {
    it.each([
      ['no Authorization header', {}],
      ['an empty Authorization header', { authorization: '' }],
      ['a wrong API key', bearer('not-a-key-of-anyone')],
      ['a Basic scheme', { authorization: `Basic ${Buffer.from(`service:${keys.service}`).toString('base64')}` }],
      ['a bare Bearer', { authorization: 'Bearer' }],
      ['two credentials', { authorization: `Bearer ${keys.service} ${keys.admin}` }],
      ['a JWT-shaped credential when no caller_jwt is configured', bearer('eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln')]
    ])('with %s', async (_name, headers) => {
      expectProblem(await token('kivra', '', headers as Record<string, string>), 401, 'CB_UNAUTHENTICATED')
    })

    it('with two Authorization headers, whichever comes first', async () => {
      // Node would keep the first; a proxy in front may keep the last: neither is taken.
      for (const pair of [[keys.service, 'not-a-key-of-anyone'], ['not-a-key-of-anyone', keys.service]]) {
        // light-my-request sends an array as repeated headers (its type says string).
        const headers = { authorization: pair.map(key => `Bearer ${key}`) as unknown as string }
        const answer = await world.testApp.app.inject({ method: 'GET', url: '/v1/credentials/kivra/token', headers })
        expectProblem(answer, 401, 'CB_UNAUTHENTICATED')
        expect(answer.json()).toMatchObject({ detail: 'more than one Authorization header' })
      }
    })

    it('before anything else: an unauthenticated request for an unknown credential learns nothing', async () => {
      expectProblem(await token('does-not-exist', '', {}), 401, 'CB_UNAUTHENTICATED')
      expectProblem(await token('kivra', '?min_ttl=abc', {}), 401, 'CB_UNAUTHENTICATED')
    })
  })

  describe('403', () => {
    it('when the caller is not in allowed_callers', async () => {
      const problem = expectProblem(await token('kivra', '', bearer(keys.other)), 403, 'CB_FORBIDDEN')
      expect(problem.detail).toContain('"other"')
    })

    it('when a front-end caller asks for a backend-only credential, even if listed', async () => {
      expectProblem(await token('kivra', '', bearer(keys.frontend)), 403, 'CB_FORBIDDEN')
    })

    it('when an admin (not listed) asks for a token: admin is not a wildcard', async () => {
      expectProblem(await token('kivra', '', bearer(keys.admin)), 403, 'CB_FORBIDDEN')
    })
  })

  it('HEAD is not a way to get (and audit) a token without receiving it', async () => {
    const audits = (): number => world.testApp.logs.entries().filter(entry => entry.msg === 'token issued').length
    const before = audits()
    const response = await world.testApp.app.inject({ method: 'HEAD', url: '/v1/credentials/kivra/token', headers: bearer(keys.service) })
    expect(response.statusCode).toBe(404)
    expect(audits()).toBe(before)
  })

  it('404 for an unknown credential', async () => {
    expectProblem(await token('no-such-credential'), 404, 'CB_CREDENTIAL_NOT_FOUND')
  })

  it('409 for a signing credential (SIR Giving has no token)', async () => {
    const problem = expectProblem(await token('sir'), 409, 'CB_UNSUPPORTED_OPERATION')
    expect(problem.detail).toContain('/signatures')
  })

  it('422 when min_ttl is longer than any token the provider issues', async () => {
    // The oauth2 stand-in issues 100 s tokens and the credential sets no lifetime_seconds, so 200 s passes
    // validation (up to a day) and only the provider's answer shows it cannot be met.
    const problem = expectProblem(await token('oauth2-short', '?min_ttl=200'), 422, 'CB_MIN_TTL_UNSATISFIABLE')
    expect(problem.lifetime_seconds).toBeGreaterThanOrEqual(99)
    expect(problem.lifetime_seconds).toBeLessThanOrEqual(100)
  })

  it('502 when the provider rejects the configured client credentials', async () => {
    const response = await token('kivra-rejecting')
    const problem = expectProblem(response, 502, 'CB_PROVIDER_REJECTED_CREDENTIALS')
    // Never the provider's body.
    expect(response.body).not.toContain('Kivra stand-in')
    expect(problem.provider_code).toBe('40104')
  })

  it.each([
    ['a 5xx', 'kigo-down', 'kigoDown'],
    ['a dropped connection', 'klavi-dropping', 'klaviDropping']
  ] as const)('503 with Retry-After when the provider fails with %s', async (_name, id, standIn) => {
    const response = await token(id)
    const problem = expectProblem(response, 503, 'CB_PROVIDER_UNAVAILABLE')
    const retryAfter = Number(response.headers['retry-after'])
    expect(retryAfter).toBeGreaterThanOrEqual(1)
    expect(problem.retry_after).toBe(retryAfter)
    await waitFor('a mint attempt', () => world.standIns[standIn].mintAttempts >= 1)
  })
})
