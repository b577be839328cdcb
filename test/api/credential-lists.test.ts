import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bearer, expectProblem, keys, startApiWorld, type ApiWorld } from './world.js'
import { waitFor } from '../support/wait.js'

interface Listed { id: string, kind: string, state: string, provider: string, consecutive_failures: number, last_error?: { kind: string }, allowed_callers?: string[], secret_path?: string, backend_only?: boolean }

const fingerprintOf = (token: string): string => createHash('sha256').update(token).digest('base64url').slice(0, 12)

describe('credential lists and forced refresh', () => {
  let world: ApiWorld
  beforeAll(async () => {
    world = await startApiWorld()
    // Let the start-up refreshes run, so states and errors are settled.
    await waitFor('the start-up refreshes', () => world.standIns.kivra.mints >= 1 && world.standIns.kivraRejecting.mintAttempts >= 1 && world.standIns.kigoDown.mintAttempts >= 1)
  })
  afterAll(async () => { await world.close() })

  const get = async (url: string, key?: string) => await world.testApp.app.inject({ url, headers: key === undefined ? {} : bearer(key) })
  const expectNoSecrets = (body: string): void => {
    for (const secret of world.secretValues) expect(body).not.toContain(secret)
    for (const token of world.issuedTokens()) expect(body).not.toContain(token)
  }

  describe('GET /v1/credentials', () => {
    it.each([
      ['service', keys.service, ['kigo', 'kigo-down', 'kivra', 'kivra-rejecting', 'klavi', 'klavi-dropping', 'oauth2-short', 'sir', 'sir-incomplete', 'sir-missing-secret']],
      ['frontend (backend-only credentials hidden even where listed)', keys.frontend, ['oauth2-short']],
      ['other', keys.other, ['kigo-other']],
      ['admin (listed nowhere)', keys.admin, []]
    ])('200: %s sees only the credentials it may use', async (_name, key, expected) => {
      const response = await get('/v1/credentials', key)
      expect(response.statusCode).toBe(200)
      const { credentials } = response.json<{ credentials: Listed[] }>()
      expect(credentials.map(credential => credential.id).sort()).toEqual(expected)
      expectNoSecrets(response.body)
      for (const credential of credentials) {
        expect(credential).not.toHaveProperty('allowed_callers')
        expect(credential).not.toHaveProperty('secret_path')
      }
    })

    it('200: shows state and the last error kind, never the provider body', async () => {
      const { credentials } = (await get('/v1/credentials', keys.service)).json<{ credentials: Listed[] }>()
      const byId = new Map(credentials.map(credential => [credential.id, credential]))
      expect(byId.get('sir')).toMatchObject({ kind: 'signing', state: 'static' })
      expect(byId.get('kivra')).toMatchObject({ kind: 'token', state: 'fresh', consecutive_failures: 0 })
      expect(byId.get('kivra-rejecting')).toMatchObject({ state: 'failing', last_error: { kind: 'permanent' } })
      expect(byId.get('kigo-down')?.consecutive_failures).toBeGreaterThanOrEqual(1)
    })

    it('401 without caller credentials', async () => {
      expectProblem(await get('/v1/credentials'), 401, 'CB_UNAUTHENTICATED')
      expectProblem(await get('/v1/credentials', 'wrong'), 401, 'CB_UNAUTHENTICATED')
    })
  })

  describe('GET /v1/admin/credentials', () => {
    it('200: every credential with its policy and secret path (never the secret)', async () => {
      const response = await get('/v1/admin/credentials', keys.admin)
      expect(response.statusCode).toBe(200)
      const { credentials } = response.json<{ credentials: Listed[] }>()
      expect(credentials).toHaveLength(world.testApp.config.credentials.length)
      expect(credentials.find(credential => credential.id === 'kivra')).toMatchObject({ allowed_callers: ['service', 'frontend'], secret_path: 'secret/kivra', backend_only: true })
      expect(credentials.find(credential => credential.id === 'oauth2-short')).toMatchObject({ backend_only: false })
      expectNoSecrets(response.body)
    })

    it('401 without caller credentials', async () => {
      expectProblem(await get('/v1/admin/credentials'), 401, 'CB_UNAUTHENTICATED')
    })

    it('403 for a caller that is not an admin', async () => {
      expectProblem(await get('/v1/admin/credentials', keys.service), 403, 'CB_FORBIDDEN')
    })
  })

  describe('POST /v1/admin/credentials/:id/refresh', () => {
    const refresh = async (id: string, key: string | null = keys.admin, extra: { payload?: string, headers?: Record<string, string> } = {}) =>
      await world.testApp.app.inject({ method: 'POST', url: `/v1/admin/credentials/${id}/refresh`, headers: { ...(key === null ? {} : bearer(key)), ...extra.headers }, payload: extra.payload })

    it('200: mints exactly once more, and answers the fingerprint, not the token', async () => {
      const before = (await get('/v1/credentials/kivra/token', keys.service)).json<{ access_token: string }>().access_token
      const mints = world.standIns.kivra.mints
      const response = await refresh('kivra')
      expect(response.statusCode).toBe(200)
      expect(world.standIns.kivra.mints).toBe(mints + 1)
      const body = response.json<{ id: string, fingerprint: string, expires_at: string, obtained_at: string }>()
      const after = (await get('/v1/credentials/kivra/token', keys.service)).json<{ access_token: string }>().access_token
      expect(after).not.toBe(before)
      expect(body).toMatchObject({ id: 'kivra', fingerprint: fingerprintOf(after) })
      expect(Date.parse(body.expires_at)).toBeGreaterThan(Date.now())
      expectNoSecrets(response.body)
    })

    it('400 for a malformed credential id', async () => {
      expectProblem(await refresh('Bad_Id!'), 400, 'CB_BAD_REQUEST')
    })

    it('401 without caller credentials', async () => {
      expectProblem(await refresh('kivra', null), 401, 'CB_UNAUTHENTICATED')
    })

    it('403 for a caller that is not an admin, and no mint', async () => {
      const mints = world.standIns.kivra.mints
      expectProblem(await refresh('kivra', keys.service), 403, 'CB_FORBIDDEN')
      expect(world.standIns.kivra.mints).toBe(mints)
    })

    it('404 for an unknown credential', async () => {
      expectProblem(await refresh('nope'), 404, 'CB_CREDENTIAL_NOT_FOUND')
    })

    it('409 for a signing credential', async () => {
      expectProblem(await refresh('sir'), 409, 'CB_UNSUPPORTED_OPERATION')
    })

    it('413 for a body over the limit', async () => {
      expectProblem(await refresh('kivra', keys.admin, { payload: JSON.stringify({ pad: 'x'.repeat(3 * 1024 * 1024) }), headers: { 'content-type': 'application/json' } }), 413, 'CB_PAYLOAD_TOO_LARGE')
    })

    it('415 for a body that is not JSON', async () => {
      expectProblem(await refresh('kivra', keys.admin, { payload: 'now please', headers: { 'content-type': 'text/plain' } }), 415, 'CB_UNSUPPORTED_MEDIA_TYPE')
    })

    it('502 when the provider rejects the client credentials', async () => {
      expectProblem(await refresh('kivra-rejecting'), 502, 'CB_PROVIDER_REJECTED_CREDENTIALS')
    })

    it('503 with Retry-After when the provider is down', async () => {
      const response = await refresh('kigo-down')
      expectProblem(response, 503, 'CB_PROVIDER_UNAVAILABLE')
      expect(Number(response.headers['retry-after'])).toBeGreaterThanOrEqual(1)
    })
  })
})
