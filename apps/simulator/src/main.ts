import { SimulatorServer } from '@app/simulator';
import { readSimulatorEnv, SimulatorEnvError } from './simulator.env';

/** The simulator on its own: an OpenAI-compatible endpoint for curl, the SDK, or a gateway started elsewhere. */
async function bootstrap(): Promise<void> {
  let env;
  try {
    env = readSimulatorEnv(process.env);
  } catch (error: unknown) {
    if (error instanceof SimulatorEnvError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
  const server = new SimulatorServer(env.options);
  const baseUrl = await server.listen(env.port, env.host);
  // stdout, one line: a script can read the URL the server actually bound (port 0 picks one).
  process.stdout.write(
    `simulator listening on ${baseUrl} (profile: ${env.options.profile ?? 'realistic'})\n`,
  );
  // One more line per deployment, for a test that starts faulty deployments as processes to read.
  for (const name of server.deploymentNames) {
    process.stdout.write(`simulator deployment ${name} on ${server.urlFor(name)}\n`);
  }

  const shutdown = (): void => {
    void server.close().then(() => process.exit(0));
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

bootstrap().catch((error: unknown) => {
  console.error(`simulator failed to start: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
