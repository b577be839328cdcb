import { createRemoteJWKSet, jwtVerify } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createOAuth2Adapter } from '../../src/providers/oauth2.js'
import { providerError, testContext, testCredential } from '../support/providers/context.js'
import { oidcAudience, oidcAudienceTokenTtl, oidcClients, oidcDefaultTokenTtl, startOidcProvider, type RunningOidcProvider } from '../support/providers/oidc-provider.js'

describe('oauth2 adapter against a real authorization server (oidc-provider)', () => {
  const adapter = createOAuth2Adapter()
  let op: RunningOidcProvider
  // oidc-provider stamps tokens with its own clock, so the adapter uses the real one here.
  const now = (): number => Date.now()

  beforeAll(async () => { op = await startOidcProvider() })
  afterAll(async () => { await op.close() })

  const credential = (overrides: Record<string, unknown> = {}): ReturnType<typeof testCredential> =>
    testCredential('oauth2', { token_url: op.tokenUrl, ...overrides })

  it('client_secret_basic: mints a token the server recognises, with the granted scope and lifetime', async () => {
    const before = Date.now()
    const grant = await adapter.mint(oidcClients.basic, testContext(credential({ client_auth: 'basic', scope: 'read' }), { now }))
    const stored = await op.provider.ClientCredentials.find(grant.accessToken)
    expect(stored).toMatchObject({ clientId: oidcClients.basic.client_id, scope: 'read' })
    expect(grant).toMatchObject({ tokenType: 'Bearer', scope: 'read' })
    expect(grant.expiresAt - grant.obtainedAt).toBe(oidcDefaultTokenTtl * 1000)
    expect(grant.obtainedAt).toBeGreaterThanOrEqual(before)
  })

  it('client_secret_post: mints a token for the post client', async () => {
    const grant = await adapter.mint(oidcClients.post, testContext(credential({ client_auth: 'post', scope: 'read write' }), { now }))
    const stored = await op.provider.ClientCredentials.find(grant.accessToken)
    expect(stored).toMatchObject({ clientId: oidcClients.post.client_id, scope: 'read write' })
  })

  it('audience: gets a JWT for that audience, verifiable with the server\'s keys', async () => {
    const grant = await adapter.mint(oidcClients.basic, testContext(credential({ scope: 'write', audience: oidcAudience }), { now }))
    const { payload } = await jwtVerify(grant.accessToken, createRemoteJWKSet(new URL(`${op.issuer}/jwks`)), { issuer: op.issuer, audience: oidcAudience })
    expect(payload).toMatchObject({ client_id: oidcClients.basic.client_id, scope: 'write' })
    expect(grant.expiresAt - grant.obtainedAt).toBe(oidcAudienceTokenTtl * 1000)
  })

  it('a wrong secret is permanent invalid_client (basic and post)', async () => {
    const basic = await providerError(adapter.mint({ ...oidcClients.basic, client_secret: 'wrong' }, testContext(credential({ client_auth: 'basic' }), { now })))
    expect(basic).toMatchObject({ kind: 'permanent', status: 401, providerCode: 'invalid_client' })
    const post = await providerError(adapter.mint({ ...oidcClients.post, client_secret: 'wrong' }, testContext(credential({ client_auth: 'post' }), { now })))
    expect(post).toMatchObject({ kind: 'permanent', status: 401, providerCode: 'invalid_client' })
  })

  it('either method works for a secret-based client (oidc-provider treats basic and post alike)', async () => {
    const grant = await adapter.mint(oidcClients.post, testContext(credential({ client_auth: 'basic' }), { now }))
    expect(await op.provider.ClientCredentials.find(grant.accessToken)).toMatchObject({ clientId: oidcClients.post.client_id })
  })

  it('a scope the client may not have and an unknown audience are permanent', async () => {
    const scope = await providerError(adapter.mint(oidcClients.basic, testContext(credential({ scope: 'admin' }), { now })))
    expect(scope).toMatchObject({ kind: 'permanent', status: 400, providerCode: 'invalid_scope' })
    const target = await providerError(adapter.mint(oidcClients.basic, testContext(credential({ audience: 'https://unknown.example' }), { now })))
    expect(target).toMatchObject({ kind: 'permanent', status: 400, providerCode: 'invalid_target' })
  })
})
