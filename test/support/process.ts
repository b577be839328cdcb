import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { freePort } from './ports.js'
import { waitFor } from './wait.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
/** tsx's loader by absolute URL, so the process may run in any working directory. */
export const tsxLoader = pathToFileURL(`${root}node_modules/tsx/dist/loader.mjs`).href

export interface BrokerProcess {
  readonly url: string
  readonly port: number
  readonly child: ChildProcess
  readonly stdout: string[]
  readonly stderr: string[]
  /** Resolves with the exit code (or signal) once the process has exited. */
  readonly exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  stop: (signal?: NodeJS.Signals) => Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/** The environment a child process gets: only what the broker reads, plus PATH and HOME. */
function baseEnv (): Record<string, string> {
  const env: Record<string, string> = {}
  for (const name of ['PATH', 'HOME', 'TMPDIR']) {
    const value = process.env[name]
    if (value !== undefined) env[name] = value
  }
  return env
}

export interface RunBrokerOptions {
  cwd?: string
  /**
   * 'ignore' sends stdout (the JSON log, with one audit line per token) to /dev/null instead of collecting
   * it: a load benchmark would otherwise spend its own CPU and memory reading the server's log. Default 'collect'.
   */
  stdout?: 'collect' | 'ignore'
  /** Run the compiled `dist/main.js` (what the Docker image runs; `npm run build` first) instead of the sources through tsx. */
  built?: boolean
  /**
   * A command that runs `node …` for us and ends by exec-ing it (so the child's pid is node's), e.g.
   * bench/memory-cgroup.ts's, which puts the broker in a memory cgroup first.
   */
  launcher?: readonly string[]
}

/** Runs `src/main.ts` (what `npm start` runs; or the build, see `built`) as a separate process and collects its output. */
export function runBroker (env: Record<string, string>, options: RunBrokerOptions = {}): Omit<BrokerProcess, 'url' | 'port'> {
  const entry = options.built === true ? [`${root}dist/main.js`] : ['--import', tsxLoader, `${root}src/main.ts`]
  const [command, ...launcherArgs] = [...(options.launcher ?? []), process.execPath]
  const child = spawn(command as string, [...launcherArgs, ...entry], {
    cwd: options.cwd ?? root,
    env: { ...baseEnv(), ...env },
    stdio: ['ignore', options.stdout === 'ignore' ? 'ignore' : 'pipe', 'pipe']
  })
  const stdout: string[] = []
  const stderr: string[] = []
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { stdout.push(...chunk.split('\n').filter(Boolean)) })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { stderr.push(...chunk.split('\n').filter(Boolean)) })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => {
    child.once('exit', (code, signal) => { resolve({ code, signal }) })
  })
  return {
    child,
    stdout,
    stderr,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return await exited
    }
  }
}

/** Starts a broker process on a free port and waits until /healthz answers. */
export async function startBroker (env: Record<string, string>, options: RunBrokerOptions & { timeoutMs?: number } = {}): Promise<BrokerProcess> {
  const port = await freePort()
  const running = runBroker({ PORT: String(port), HOST: '127.0.0.1', ...env }, options)
  const url = `http://127.0.0.1:${port}`
  try {
    await waitFor(`${url}/healthz to answer`, async () => {
      if (running.child.exitCode !== null) throw new Error(`broker exited with ${running.child.exitCode}`)
      return await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) }).then(response => response.ok, () => false)
    }, { timeout: options.timeoutMs ?? 20_000, interval: 100 })
  } catch (err) {
    await running.stop('SIGKILL')
    throw new Error(`broker did not become healthy (${(err as Error).message}): ${running.stderr.join('\n')}`)
  }
  return { ...running, url, port }
}
