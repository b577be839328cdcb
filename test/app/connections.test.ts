import { connect, type AddressInfo, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, type TestApp } from '../support/app.js'
import { parseRawAnswer, rawExchange } from '../support/raw-http.js'
import { waitFor } from '../support/wait.js'

/** A keep-alive connection that has had one answer (so the server has accepted and counted it). */
async function openConnection (port: number): Promise<Socket> {
  return await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => { socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n') })
    socket.once('data', () => { resolve(socket) })
    socket.once('error', reject)
  })
}

describe('connection limits (a listening app)', () => {
  let testApp: TestApp
  let port: number
  beforeAll(async () => {
    testApp = await buildTestApp({ store: 'memory', env: { MAX_CONNECTIONS: '2' } })
    await testApp.app.listen({ port: 0, host: '127.0.0.1' })
    port = (testApp.app.server.address() as AddressInfo).port
  })
  afterAll(async () => { await testApp.close() })

  it('announces the keep-alive timeout it closes idle sockets after', async () => {
    const answer = await rawExchange(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 5000)
    expect(parseRawAnswer(answer.text).headers['keep-alive']).toBe('timeout=10')
  })

  it('closes a socket that trickles its headers, with a 408 problem, well before a minute', async () => {
    const started = Date.now()
    let timer: NodeJS.Timeout | undefined
    const answer = await rawExchange(port, socket => {
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n')
      let line = 0
      // One header line a second: never idle long enough for a socket timeout, never done.
      timer = setInterval(() => { if (!socket.destroyed) socket.write(`X-Slow-${line++}: y\r\n`) }, 1000)
    }, 40_000, { untilClose: true })
    clearInterval(timer)
    expect(answer.closed).toBe(true)
    // headersTimeout is 10 s; the bound is generous (Node checks every second), the point is "not 65 s".
    expect(Date.now() - started).toBeLessThan(25_000)
    expect(answer.status).toBe(408)
    expect(answer.headers['content-type']).toBe('application/problem+json; charset=utf-8')
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'CB_REQUEST_TIMEOUT', status: 408 })
  }, 45_000)

  it('refuses connections past MAX_CONNECTIONS, and accepts again once one closes', async () => {
    const first = await openConnection(port)
    const second = await openConnection(port)
    try {
      const refused = await rawExchange(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 5000)
      expect(refused.closed).toBe(true)
      expect(refused.text).toBe('')
    } finally {
      first.destroy()
    }
    await waitFor('the server to count the closed connection', async () => await new Promise<boolean>(resolve => {
      testApp.app.server.getConnections((_err, count) => { resolve(count < 2) })
    }), { timeout: 5000, interval: 20 })
    const served = await rawExchange(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 5000)
    expect(served.status).toBe(200)
    second.destroy()
  })
})
