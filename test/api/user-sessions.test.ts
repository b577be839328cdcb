import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bearer, expectProblem, keys, startApiWorld, type ApiWorld } from './world.js'

const alice = { external_user_id: 'user-alice', user_email: 'alice@example.test', external_program_id: 'program-1' }

describe('POST /v1/credentials/:id/user-sessions', () => {
  let world: ApiWorld
  beforeAll(async () => { world = await startApiWorld() })
  afterAll(async () => { await world.close() })

  const session = async (id: string, payload: unknown, options: { query?: string, headers?: Record<string, string>, contentType?: string } = {}) =>
    await world.testApp.app.inject({
      method: 'POST',
      url: `/v1/credentials/${id}/user-sessions${options.query ?? ''}`,
      headers: { ...bearer(keys.service), ...(options.contentType === undefined ? {} : { 'content-type': options.contentType }), ...options.headers },
      payload: payload as object
    })

  it('200: a Kigo user session, no-store, without the refresh token; cached for the user', async () => {
    const response = await session('kigo', alice)
    expect(response.statusCode).toBe(200)
    expect(response.headers['cache-control']).toBe('no-store')
    const body = response.json<Record<string, unknown>>()
    expect(Object.keys(body).sort()).toEqual(['access_token', 'expires_at', 'expires_in', 'token_type'])
    expect(body.token_type).toBe('Bearer')
    expect(world.standIns.kigo.tokenInfo(body.access_token as string)?.endpoint).toBe('accounts')
    expect(body.expires_in).toBeGreaterThan(1700)
    const again = await session('kigo', alice)
    expect(again.json<Record<string, unknown>>().access_token).toBe(body.access_token)
    expect(world.standIns.kigo.attempts('accounts')).toBe(1)
  })

  it('never logs or answers the email, the user id or the refresh token; the audit line carries a hash of the user', async () => {
    await session('kigo', { ...alice, external_user_id: 'user-carol', user_email: 'carol@example.test' })
    const text = world.testApp.logs.text()
    expect(text).not.toContain('carol@example.test')
    expect(text).not.toContain('user-carol')
    for (const recorded of world.standIns.kigo.userSessions) expect(text).not.toContain(recorded.refreshToken)
    const audits = world.testApp.logs.entries().filter(entry => entry.msg === 'user session issued')
    expect(audits.length).toBeGreaterThanOrEqual(1)
    expect(audits.at(-1)).toMatchObject({ audit: true, caller: 'service', credentialId: 'kigo', user: expect.stringMatching(/^[A-Za-z0-9_-]{12}$/) })
  })

  it.each([
    ['both external_program_id and brand_identifier', { ...alice, brand_identifier: 'brand-1' }],
    ['neither of them', { external_user_id: 'u', user_email: 'u@example.test' }],
    ['an email that is not one', { ...alice, user_email: 'not-an-email' }],
    ['an unknown field', { ...alice, extra: 1 }],
    ['no user id', { user_email: 'u@example.test', brand_identifier: 'b' }]
  ])('400 for %s, and nothing is sent to Kigo', async (_name, payload) => {
    const before = world.standIns.kigo.attempts('accounts')
    expectProblem(await session('kigo', payload), 400, 'CB_BAD_REQUEST')
    expect(world.standIns.kigo.attempts('accounts')).toBe(before)
  })

  it('400 for a min_ttl above the lifetime', async () => {
    expectProblem(await session('kigo', alice, { query: '?min_ttl=90000' }), 400, 'CB_BAD_REQUEST')
  })

  it('401 without caller credentials', async () => {
    expectProblem(await session('kigo', alice, { headers: { authorization: '' } }), 401, 'CB_UNAUTHENTICATED')
  })

  it('403 for a caller the credential does not list, 404 for an unknown credential', async () => {
    expectProblem(await session('kigo', alice, { headers: bearer(keys.other) }), 403, 'CB_FORBIDDEN')
    expectProblem(await session('nope', alice), 404, 'CB_CREDENTIAL_NOT_FOUND')
  })

  it('409 for a credential that is not Kigo', async () => {
    expectProblem(await session('kivra', alice), 409, 'CB_UNSUPPORTED_OPERATION')
    expectProblem(await session('sir', alice), 409, 'CB_UNSUPPORTED_OPERATION')
  })

  it('413 for a body over the limit, 415 for a body that is not JSON', async () => {
    expectProblem(await session('kigo', { ...alice, user_email: `${'a'.repeat(3_000_000)}@example.test` }), 413, 'CB_PAYLOAD_TOO_LARGE')
    expectProblem(await session('kigo', 'external_user_id=u', { contentType: 'text/plain' }), 415, 'CB_UNSUPPORTED_MEDIA_TYPE')
  })

  it('422 for a min_ttl no session can meet', async () => {
    expectProblem(await session('kigo', { ...alice, external_user_id: 'user-dave' }, { query: '?min_ttl=1800' }), 422, 'CB_MIN_TTL_UNSATISFIABLE')
  })

  it('502 when Kigo refuses the session, 503 when the partner token cannot be had', async () => {
    world.standIns.kigo.setFault({ kind: 'server-error', status: 400 }, { endpoint: 'accounts', times: 1 })
    expectProblem(await session('kigo', { ...alice, external_user_id: 'user-erin' }), 502, 'CB_USER_SESSION_REFUSED')
    const unavailable = await session('kigo-down', alice)
    expectProblem(unavailable, 503, 'CB_PROVIDER_UNAVAILABLE')
    expect(Number(unavailable.headers['retry-after'])).toBeGreaterThanOrEqual(1)
  })
})

describe('GET /v1/credentials/:id/token?scope=', () => {
  let world: ApiWorld
  beforeAll(async () => { world = await startApiWorld() })
  afterAll(async () => { await world.close() })
  const token = async (id: string, query: string) => await world.testApp.app.inject({ url: `/v1/credentials/${id}/token${query}`, headers: bearer(keys.service) })

  it('200 with the granted scope for an allowed scope; 403 for another, with no mint; 409 on a provider without scopes', async () => {
    const response = await token('kivra', `?scope=${encodeURIComponent('post:kivra.v1.tenant.example.content')}`)
    expect(response.statusCode).toBe(200)
    expect(response.json<{ scope: string }>().scope).toBe('post:kivra.v1.tenant.example.content')
    const attempts = world.standIns.kivra.mintAttempts
    expectProblem(await token('kivra', '?scope=post%3Akivra.v1.tenant.other.content'), 403, 'CB_SCOPE_NOT_ALLOWED')
    expect(world.standIns.kivra.mintAttempts).toBe(attempts)
    expectProblem(await token('kigo', '?scope=anything'), 409, 'CB_UNSUPPORTED_OPERATION')
  })

  it('400 for an empty scope', async () => {
    expectProblem(await token('kivra', '?scope=%20%20'), 400, 'CB_BAD_REQUEST')
  })
})
