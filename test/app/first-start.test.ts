import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { embeddedCredentialsFile, loadConfig, parseCredentialsFile } from '../../src/config.js'
import { servesWithStandIns } from '../../src/embedded/stand-ins/embedded.js'
import { freePort } from '../support/ports.js'

/*
 * What a new user meets: `npm start` (and the compiled `node dist/main.js`) on a fresh clone with an empty
 * environment, asked exactly what the README's Quick start asks, with the README's example API key.
 */

const root = fileURLToPath(new URL('../../', import.meta.url))
const readme = readFileSync(join(root, 'README.md'), 'utf8')

/** How long the first-start log is watched for failed refreshes and stack traces. */
const watchMs = 30_000

interface Spawned {
  readonly child: ChildProcess
  readonly output: () => string
  readonly stderr: () => string
  readonly exited: Promise<number | null>
  /** Stops the whole process group (npm → sh → tsx → node). */
  stop: () => Promise<void>
}

/** Only what a login shell would surely have: PATH, a fresh HOME and TMPDIR, plus `extra`. */
function emptyEnvironment (extra: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: mkdtempSync(join(tmpdir(), 'cb-home-')), TMPDIR: tmpdir(), ...extra }
}

function run (command: string, args: string[], options: { cwd: string, env: Record<string, string> }): Spawned {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { err += chunk })
  const exited = new Promise<number | null>(resolve => { child.once('exit', code => { resolve(code) }) })
  return {
    child,
    output: () => out + err,
    stderr: () => err,
    exited,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      try { process.kill(-(child.pid as number), 'SIGTERM') } catch { return }
      const timer = setTimeout(() => { try { process.kill(-(child.pid as number), 'SIGKILL') } catch { /* already gone */ } }, 10_000)
      await exited
      clearTimeout(timer)
    }
  }
}

async function waitUntilReady (port: number, process: Spawned, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (process.child.exitCode !== null) throw new Error(`exited with ${process.child.exitCode} before it was ready:\n${process.output()}`)
    try {
      const response = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2000) })
      if (response.status === 200) return
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`not ready within ${timeoutMs} ms:\n${process.output()}`)
    await new Promise(resolve => setTimeout(resolve, 250))
  }
}

/** The Quick start's curl commands for tokens, signatures and webhook verifications, continuations joined, comments dropped. */
function readmeCurls (): Array<{ kind: 'token' | 'signature' | 'webhook', command: string }> {
  const section = readme.slice(readme.indexOf('## Quick start'), readme.indexOf('\n## ', readme.indexOf('## Quick start') + 3))
  const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map(match => match[1] as string)
  const commands = blocks.flatMap(block => block.replace(/\\\n\s*/g, '').split('\n')).map(line => line.trim()).filter(line => line.startsWith('curl '))
  type Curl = { kind: 'token' | 'signature' | 'webhook', command: string }
  return commands.flatMap((command): Curl[] => {
    // A trailing shell comment (after the last quoted word) is for the reader.
    const comment = command.indexOf(' #', command.lastIndexOf("'") + 1)
    const bare = (comment === -1 ? command : command.slice(0, comment)).trimEnd()
    if (/\/token\b/.test(bare)) return [{ kind: 'token', command: bare }]
    if (/\/signatures\b/.test(bare)) return [{ kind: 'signature', command: bare }]
    if (/\/webhook-verifications\b/.test(bare)) return [{ kind: 'webhook', command: bare }]
    return []
  })
}

/** Runs one README curl (with bash and curl, as a reader would) against `port`; returns the status and body. */
async function curl (command: string, port: number): Promise<{ status: number, body: unknown }> {
  const pointed = command.replaceAll('localhost:8080', `localhost:${port}`)
  const shell = run('bash', ['-c', `${pointed} --max-time 10 -w '\\n%{http_code}'`], { cwd: root, env: { PATH: process.env.PATH ?? '' } })
  const code = await shell.exited
  expect(code, `${pointed}\n${shell.output()}`).toBe(0)
  const text = shell.output().trimEnd()
  const newline = text.lastIndexOf('\n')
  return { status: Number(text.slice(newline + 1)), body: JSON.parse(text.slice(0, newline)) as unknown }
}

async function askWhatTheReadmeAsks (port: number): Promise<void> {
  const curls = readmeCurls()
  expect(curls.map(c => c.kind)).toEqual(expect.arrayContaining(['token', 'signature', 'webhook']))
  for (const { kind, command } of curls) {
    const answer = await curl(command, port)
    expect(answer.status, `${command} → ${JSON.stringify(answer.body)}`).toBe(200)
    const body = answer.body as Record<string, unknown>
    if (kind === 'token') {
      expect(body.access_token).toEqual(expect.any(String))
      expect(body.expires_in).toBeGreaterThan(0)
    }
    if (kind === 'signature') expect(Object.keys(body.headers as Record<string, string>).map(key => key.toLowerCase())).toEqual(expect.arrayContaining(['x-partner-key', 'x-timestamp', 'x-signature']))
    if (kind === 'webhook') expect(body).toEqual({ valid: true })
  }
}

/** Holds a port on every interface, as another program would. */
async function holdPort (port: number): Promise<Server> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(port, '0.0.0.0', () => { resolve() }) })
  return server
}

describe('the README\'s first requests', () => {
  it('use the example API key of the example credentials', () => {
    const example = parseCredentialsFile(readFileSync(embeddedCredentialsFile, 'utf8'), embeddedCredentialsFile)
    const key = /Authorization: Bearer (\S+)'/.exec(readmeCurls()[0]?.command ?? '')?.[1] as string
    expect(key).toBe('example-api-key-change-me')
    for (const { command } of readmeCurls()) expect(command).toContain(`Bearer ${key}'`)
    expect(example.callers.map(caller => caller.api_key_sha256)).toContain(createHash('sha256').update(key).digest('hex'))
  })
})

describe('the embedded default serves only on the example credentials, never in production', () => {
  const emptyCwd = (): string => mkdtempSync(join(tmpdir(), 'cb-cwd-'))
  it('starts stand-ins with no CREDENTIALS_FILE and no ./credentials.yaml', () => {
    expect(servesWithStandIns(loadConfig({}, emptyCwd()))).toBe(true)
  })
  it('does not with a credentials file, even a copy of the example', () => {
    expect(servesWithStandIns(loadConfig({ CREDENTIALS_FILE: embeddedCredentialsFile }, emptyCwd()))).toBe(false)
  })
  it('does not in production (which refuses the example credentials anyway)', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' }, emptyCwd())).toThrow(/CREDENTIALS_FILE/)
  })
})

describe('a fresh clone with nothing configured', () => {
  let npmStart: Spawned | undefined
  let npmStartPort = 0
  let startedAt = 0
  let build: Spawned | undefined

  beforeAll(async () => {
    // A ./credentials.yaml in the checkout would replace the example credentials this test is about.
    expect(existsSync(join(root, 'credentials.yaml')), 'move ./credentials.yaml away: this test runs npm start on the defaults').toBe(false)
    npmStartPort = await freePort()
    startedAt = Date.now()
    npmStart = run('npm', ['start'], { cwd: root, env: emptyEnvironment({ PORT: String(npmStartPort) }) })
    // The compiled test needs dist/; build it meanwhile (what the Docker image runs).
    build = run('npm', ['run', 'build'], { cwd: root, env: emptyEnvironment({}) })
    await waitUntilReady(npmStartPort, npmStart, 60_000)
  }, 90_000)

  afterAll(async () => {
    await npmStart?.stop()
    await build?.stop()
  }, 30_000)

  it('`npm start` answers the README\'s token, signature and webhook requests with 200', async () => {
    await askWhatTheReadmeAsks(npmStartPort)
    expect(npmStart!.output()).toMatch(/provider stand-ins running on loopback/)
  })

  it('the compiled `node dist/main.js` does the same, from any working directory; a taken port is one line and exit 1', async () => {
    const built = await build!.exited
    expect(built, build!.output()).toBe(0)
    const port = await freePort()
    const compiled = run(process.execPath, [join(root, 'dist/main.js')], { cwd: mkdtempSync(join(tmpdir(), 'cb-cwd-')), env: emptyEnvironment({ PORT: String(port) }) })
    try {
      await waitUntilReady(port, compiled, 30_000)
      await askWhatTheReadmeAsks(port)

      // A second broker on the same port.
      const second = run(process.execPath, [join(root, 'dist/main.js')], { cwd: root, env: emptyEnvironment({ PORT: String(port) }) })
      expect(await second.exited).toBe(1)
      expect(second.stderr().trimEnd().split('\n')).toEqual([
        `credential-broker: the broker cannot listen on 0.0.0.0:${port}: the port is already in use; set PORT (and HOST) to a free one`
      ])
      expect(second.output()).not.toMatch(/stand-ins running/)
    } finally {
      await compiled.stop()
    }
  }, 120_000)

  it('`npm run demo` on a taken port says so in one line and exits non-zero', async () => {
    const port = await freePort()
    const holder = await holdPort(port)
    try {
      const demo = run('npm', ['run', '--silent', 'demo'], { cwd: root, env: emptyEnvironment({ PORT: String(port) }) })
      expect(await demo.exited).not.toBe(0)
      expect(demo.stderr().trimEnd().split('\n')).toEqual([
        `credential-broker: the demo broker cannot listen on 127.0.0.1:${port}: the port is already in use; set PORT to a free one (PORT=8090 npm run demo)`
      ])
    } finally {
      holder.close()
    }
  }, 60_000)

  it('`npm run stand-ins` on a taken stand-in port says so in one line and exits non-zero', async () => {
    let holder: Server
    try {
      holder = await holdPort(4011)
    } catch {
      // Something already holds 4011: that is the very case under test.
      holder = createServer()
    }
    try {
      const standIns = run('npm', ['run', '--silent', 'stand-ins'], { cwd: root, env: emptyEnvironment({}) })
      try {
        expect(await standIns.exited).toBe(1)
        // Kigo's, or an earlier one's when this machine already holds 4010 too.
        const lines = standIns.stderr().trimEnd().split('\n')
        expect(lines).toHaveLength(1)
        expect(lines[0]).toMatch(/^credential-broker: the (kivra|kigo) stand-in cannot listen on 127\.0\.0\.1:401[01]: the port is already in use; stop what holds it \(another `npm run stand-ins`, `docker compose up`\?\)$/)
      } finally {
        await standIns.stop()
      }
    } finally {
      holder.close()
    }
  }, 60_000)

  it(`logs no failed refresh and no stack trace in its first ${watchMs / 1000} s`, async () => {
    const left = startedAt + watchMs - Date.now()
    if (left > 0) await new Promise(resolve => setTimeout(resolve, left))
    const log = npmStart!.output()
    expect(npmStart!.child.exitCode).toBeNull()
    expect(log).not.toMatch(/refresh failed/)
    expect(log).not.toMatch(/\n\s+at \S/)
    expect(log).not.toMatch(/"stack"/)
    // Every line after npm's own banner is a JSON log line.
    const lines = log.split('\n').filter(line => line.trim() !== '' && !line.startsWith('>'))
    for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow()
    expect(lines.filter(line => (JSON.parse(line) as { msg?: string }).msg === 'grant refreshed')).toHaveLength(3)
  }, watchMs + 30_000)
})
