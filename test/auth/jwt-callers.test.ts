import { beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, sha256Hex, type TestApp } from '../support/app.js'
import { useCleanup } from '../support/fixtures.js'
import { expectProblem } from '../api/world.js'
import { audience, callerToken, issuer, signingKey, startJwksServer, type JwksServer, type SigningKey } from './jwt-issuer.js'

describe('JWT callers through the API (caller_jwt.jwks_url)', () => {
  let key: SigningKey
  let jwks: JwksServer
  let testApp: TestApp
  const cleanup = useCleanup({ after: 'all' })
  beforeAll(async () => {
    key = await signingKey('ES256')
    jwks = cleanup.add(await startJwksServer([key.jwk]))
    testApp = cleanup.add(await buildTestApp({
      credentialsFile: {
        caller_jwt: { issuer, audience, jwks_url: jwks.url },
        callers: [
          { id: 'mailer', jwt_subject: 'system:serviceaccount:mail:mailer' },
          { id: 'ops', jwt_subject: 'system:serviceaccount:ops:console', admin: true },
          { id: 'billing', api_key_sha256: sha256Hex('billing-key-0123456789') }
        ],
        credentials: [
          { id: 'sir', provider: 'sir-giving', environment: 'sandbox', secret: 'secret/sir', allowed_callers: ['mailer'] },
          { id: 'sir-billing', provider: 'sir-giving', environment: 'sandbox', secret: 'secret/sir', allowed_callers: ['billing'] }
        ]
      },
      secrets: { 'secret/sir': { secretKey: 'sk_test_jwt', hmacSecret: 'cd'.repeat(32) } }
    }))
  })

  const list = async (token: string, url = '/v1/credentials') => await testApp.app.inject({ url, headers: { authorization: `Bearer ${token}` } })

  it('a service account token identifies its caller: 200 with only its credentials', async () => {
    const response = await list(await callerToken(key, { sub: 'system:serviceaccount:mail:mailer' }))
    expect(response.statusCode).toBe(200)
    expect(response.json<{ credentials: Array<{ id: string }> }>().credentials.map(credential => credential.id)).toEqual(['sir'])
  })

  it('an admin JWT caller reaches /v1/admin; a non-admin one gets 403', async () => {
    expect((await list(await callerToken(key, { sub: 'system:serviceaccount:ops:console' }), '/v1/admin/credentials')).statusCode).toBe(200)
    expectProblem(await list(await callerToken(key, { sub: 'system:serviceaccount:mail:mailer' }), '/v1/admin/credentials'), 403, 'CB_FORBIDDEN')
  })

  it('401 problem for a token for another audience', async () => {
    expectProblem(await list(await callerToken(key, { sub: 'system:serviceaccount:mail:mailer', aud: 'vault' })), 401, 'CB_UNAUTHENTICATED')
  })

  it('403 problem for a valid token of an unregistered service account', async () => {
    expectProblem(await list(await callerToken(key, { sub: 'system:serviceaccount:default:default' })), 403, 'CB_FORBIDDEN')
  })

  it('API key callers keep working beside JWT callers', async () => {
    expect((await list('billing-key-0123456789')).statusCode).toBe(200)
  })

  it('503 problem with Retry-After when the key set cannot be fetched', async () => {
    // A broker whose JWKS endpoint fails from the start (production cooldowns: no key set ever held).
    const failing = await startJwksServer([key.jwk])
    failing.mode = 'error'
    const other = await buildTestApp({
      store: 'memory',
      credentialsFile: {
        caller_jwt: { issuer, audience, jwks_url: failing.url },
        callers: [{ id: 'mailer', jwt_subject: 'system:serviceaccount:mail:mailer' }, { id: 'ops', jwt_subject: 'system:serviceaccount:ops:console', admin: true }]
      }
    })
    try {
      const token = await callerToken(key, { sub: 'system:serviceaccount:mail:mailer' })
      const response = await other.app.inject({ url: '/v1/credentials', headers: { authorization: `Bearer ${token}` } })
      expectProblem(response, 503, 'CB_CALLER_KEYS_UNAVAILABLE')
      expect(Number(response.headers['retry-after'])).toBeGreaterThanOrEqual(1)
      const admin = await other.app.inject({ url: '/v1/admin/credentials', headers: { authorization: `Bearer ${await callerToken(key, { sub: 'system:serviceaccount:ops:console' })}` } })
      expectProblem(admin, 503, 'CB_CALLER_KEYS_UNAVAILABLE')
      expect(other.logs.text()).not.toContain(token)
      // Once the key set is back, the same token works.
      failing.mode = 'ok'
      expect((await other.app.inject({ url: '/v1/credentials', headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(200)
    } finally {
      await other.close()
      await failing.close()
    }
  })
})
