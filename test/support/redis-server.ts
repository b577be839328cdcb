import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { connect } from 'node:net'
import { freePort } from './ports.js'
import { waitFor } from './wait.js'

export interface SpawnedRedis {
  readonly url: string
  readonly port: number
  /** Stop with SIGKILL (a crash, for fault tests). */
  kill: () => Promise<void>
  /** Start again on the same port (after kill). */
  restart: () => Promise<void>
  stop: () => Promise<void>
}

export function hasRedisServerBinary (): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0
}

/** One PING on a fresh connection: true once redis-server answers PONG. */
async function answersPing (port: number): Promise<boolean> {
  return await new Promise<boolean>(resolve => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.write('PING\r\n') })
    socket.once('data', data => { socket.destroy(); resolve(data.toString().startsWith('+PONG')) })
    socket.once('error', () => { socket.destroy(); resolve(false) })
  })
}

/** Spawns a throwaway `redis-server` on a free loopback port, keeping nothing on disk. */
export async function spawnRedisServer (fixedPort?: number): Promise<SpawnedRedis> {
  const port = fixedPort ?? await freePort()
  let child: ChildProcess | undefined
  const start = async (): Promise<void> => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes', '--loglevel', 'warning'], { stdio: 'ignore' })
    await waitFor(`redis-server to answer on port ${port}`, async () => await answersPing(port), { timeout: 10_000, interval: 50 })
  }
  const terminate = async (signal: NodeJS.Signals): Promise<void> => {
    const running = child
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return
    await new Promise<void>(resolve => {
      running.once('exit', () => { resolve() })
      running.kill(signal)
    })
  }
  await start()
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    kill: async () => { await terminate('SIGKILL') },
    restart: start,
    stop: async () => { await terminate('SIGTERM') }
  }
}
