import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, defaultCallers, exampleApiKey, type TestApp } from '../support/app.js'
import { startOAuth2StandIn, type OAuth2StandIn } from '../support/providers/index.js'

/** A provider whose tokens live 5 s, and a credential that configures no lifetime (so the broker expects an hour). */
describe('GET /v1/credentials/:id/token without min_ttl', () => {
  let standIn: OAuth2StandIn
  let testApp: TestApp
  beforeAll(async () => {
    standIn = await startOAuth2StandIn({ lifetimeSeconds: 5 })
    testApp = await buildTestApp({
      credentialsFile: {
        callers: defaultCallers,
        credentials: [{ id: 'five-seconds', provider: 'oauth2', environment: 'sandbox', secret: 'secret/oauth2', token_url: standIn.tokenUrl, allowed_callers: ['service'] }]
      },
      secrets: { 'secret/oauth2': { ...standIn.secret } }
    })
  })
  afterAll(async () => {
    await testApp.close()
    await standIn.close()
  })

  const token = async (query = ''): Promise<{ statusCode: number, body: { code?: string, expires_in?: number, access_token?: string } }> => {
    const response = await testApp.app.inject({ url: `/v1/credentials/five-seconds/token${query}`, headers: { authorization: `Bearer ${exampleApiKey}` } })
    return { statusCode: response.statusCode, body: response.json() }
  }

  it('serves a caller that names none, with a quarter of the lifetime the provider really gives, on the first call and after', async () => {
    const first = await token()
    expect(first.statusCode).toBe(200)
    expect(standIn.isTokenValid(first.body.access_token as string)).toBe(true)
    expect(first.body.expires_in).toBeGreaterThanOrEqual(1) // floor(5 s / 4)
    const mints = standIn.mints
    const again = await token()
    expect(again.statusCode).toBe(200)
    expect(again.body.access_token).toBe(first.body.access_token) // no mint per request
    expect(standIn.mints).toBe(mints)
  })

  it('answers 422 only to a caller that asked for more than such tokens can give', async () => {
    const explicit = await token('?min_ttl=60')
    expect(explicit.statusCode).toBe(422)
    expect(explicit.body.code).toBe('CB_MIN_TTL_UNSATISFIABLE')
  })
})
