import { describe, expect, it } from 'vitest'
import { baseUrlFor, createProviderRegistry, endpointUrl, providerCatalog } from '../../src/providers/catalog.js'
import { testCredential } from '../support/providers/context.js'
import { ProviderError } from '../../src/errors.js'

describe('createProviderRegistry', () => {
  const registry = createProviderRegistry()

  it('has one adapter per provider kind, each declaring its documented secret fields', () => {
    const summary = Object.fromEntries([...registry.adapters].map(([kind, adapter]) => [kind, { kind: adapter.kind, provider: adapter.provider, secretFields: [...adapter.secretFields] }]))
    expect(summary).toEqual({
      kivra: { kind: 'token', provider: 'kivra', secretFields: ['client_id', 'client_secret'] },
      kigo: { kind: 'token', provider: 'kigo', secretFields: ['api_key', 'partner_id'] },
      klavi: { kind: 'token', provider: 'klavi', secretFields: ['accessKey', 'secretKey'] },
      'sir-giving': { kind: 'signing', provider: 'sir-giving', secretFields: ['secretKey'] },
      oauth2: { kind: 'token', provider: 'oauth2', secretFields: ['client_id', 'client_secret'] }
    })
    expect(registry.adapterFor('klavi')).toBe(registry.adapters.get('klavi'))
  })

  it('only Klavi can refresh; the others mint again', () => {
    const refreshers = [...registry.adapters.values()].filter(adapter => adapter.kind === 'token' && adapter.refresh !== undefined).map(adapter => adapter.provider)
    expect(refreshers).toEqual(['klavi'])
  })

  it('has webhook verifiers for Kivra, Klavi and SIR Giving only', () => {
    expect(registry.webhookVerifierFor('kivra')?.provider).toBe('kivra')
    expect(registry.webhookVerifierFor('klavi')?.provider).toBe('klavi')
    expect(registry.webhookVerifierFor('sir-giving')?.provider).toBe('sir-giving')
    expect(registry.webhookVerifierFor('kigo')).toBeUndefined()
    expect(registry.webhookVerifierFor('oauth2')).toBeUndefined()
  })

  it('gives each registry its own adapters', () => {
    expect(createProviderRegistry().adapterFor('sir-giving')).not.toBe(registry.adapterFor('sir-giving'))
  })
})

describe('hosts', () => {
  it('picks the documented host per environment', () => {
    expect(baseUrlFor(testCredential('kivra', { environment: 'production' }))).toBe('https://sender.api.kivra.com')
    expect(baseUrlFor(testCredential('kivra', { environment: 'sandbox' }))).toBe('https://sender.sandbox-api.kivra.com')
    expect(baseUrlFor(testCredential('klavi', { environment: 'sandbox' }))).toBe('https://api-sandbox.klavi.ai')
    expect(baseUrlFor(testCredential('sir-giving', { environment: 'production' }))).toBe(providerCatalog['sir-giving'].hosts?.production)
  })

  it('honours base_url, keeping a path prefix and dropping trailing slashes', () => {
    const credential = testCredential('kigo', { base_url: 'http://127.0.0.1:9999/proxy/kigo/' })
    expect(endpointUrl(credential, '/api/v1/auth/sessions').href).toBe('http://127.0.0.1:9999/proxy/kigo/api/v1/auth/sessions')
  })

  it('has no host for generic OAuth2 (token_url instead)', () => {
    expect(() => baseUrlFor(testCredential('oauth2', { token_url: 'http://127.0.0.1:1/token' }))).toThrow(ProviderError)
  })
})
