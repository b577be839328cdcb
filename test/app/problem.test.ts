import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, exampleApiKey, type TestApp } from '../support/app.js'

describe('errors are application/problem+json with a stable code', () => {
  let testApp: TestApp
  beforeAll(async () => {
    testApp = await buildTestApp({
      store: 'memory',
      credentialsFile: {
        callers: [{ id: 'service', api_key_sha256: (await import('../support/app.js')).sha256Hex(exampleApiKey) }],
        credentials: [{ id: 'sir', provider: 'sir-giving', environment: 'sandbox', secret: 'secret/sir', allowed_callers: ['service'] }]
      },
      secrets: { 'secret/sir': { secretKey: 'sk_test_x', hmacSecret: 'ab'.repeat(32) } }
    })
  })
  afterAll(async () => { await testApp.close() })

  const auth = { authorization: `Bearer ${exampleApiKey}` }

  it('404 for an unknown route, with our own request id (a caller\'s x-request-id is never taken as ours)', async () => {
    const response = await testApp.app.inject({ url: '/nope?secret=1', headers: { 'x-request-id': 'req-123' } })
    expect(response.statusCode).toBe(404)
    expect(response.headers['content-type']).toBe('application/problem+json; charset=utf-8')
    const requestId = response.headers['x-request-id']
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/)
    expect(response.json()).toEqual({
      type: 'urn:credential-broker:problem:route-not-found',
      title: 'No such route',
      status: 404,
      detail: 'no route for GET at this path',
      code: 'CB_ROUTE_NOT_FOUND',
      instance: '/nope',
      request_id: requestId
    })
  })

  it('401 without caller credentials', async () => {
    const response = await testApp.app.inject({ url: '/v1/credentials' })
    expect(response.statusCode).toBe(401)
    expect(response.json()).toMatchObject({ code: 'CB_UNAUTHENTICATED', status: 401 })
  })

  it('400 with the failing field for a bad body', async () => {
    const response = await testApp.app.inject({ method: 'POST', url: '/v1/credentials/sir/signatures', headers: auth, payload: { method: 'POST', path: 'no-slash', body_sha256: 'x' } })
    expect(response.statusCode).toBe(400)
    const problem = response.json()
    expect(problem).toMatchObject({ code: 'CB_BAD_REQUEST', status: 400 })
    expect(problem.errors.map((e: { path: string }) => e.path).sort()).toEqual(['body.body_sha256', 'body.path'])
  })

  it('400 for malformed JSON', async () => {
    const response = await testApp.app.inject({ method: 'POST', url: '/v1/credentials/sir/signatures', headers: { ...auth, 'content-type': 'application/json' }, payload: '{"method":' })
    expect(response.statusCode).toBe(400)
    expect(response.json()).toMatchObject({ code: 'CB_BAD_REQUEST' })
  })

  it('413 for a body over the limit', async () => {
    const response = await testApp.app.inject({ method: 'POST', url: '/v1/credentials/sir/signatures', headers: { ...auth, 'content-type': 'application/json' }, payload: JSON.stringify({ pad: 'x'.repeat(3 * 1024 * 1024) }) })
    expect(response.statusCode).toBe(413)
    expect(response.json()).toMatchObject({ code: 'CB_PAYLOAD_TOO_LARGE' })
  })

  it('415 for an unsupported content type', async () => {
    const response = await testApp.app.inject({ method: 'POST', url: '/v1/credentials/sir/signatures', headers: { ...auth, 'content-type': 'application/xml' }, payload: '<x/>' })
    expect(response.statusCode).toBe(415)
    expect(response.json()).toMatchObject({ code: 'CB_UNSUPPORTED_MEDIA_TYPE' })
  })

  it('500 hides the internal error behind a generic detail', async () => {
    testApp.app.broker.statuses = () => { throw new Error('boom with a secret-ish detail') }
    const response = await testApp.app.inject({ url: '/v1/credentials', headers: auth })
    expect(response.statusCode).toBe(500)
    expect(response.json()).toMatchObject({ code: 'CB_INTERNAL' })
    expect(response.body).not.toContain('boom')
    expect(response.body).not.toContain('at ')
  })
})
