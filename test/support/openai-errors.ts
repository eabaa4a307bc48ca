import OpenAI from 'openai';

/** The error an OpenAI SDK call rejected with; fails with what it resolved to otherwise. */
export async function rejection(call: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  const outcome = await call.then(
    (value) => ({ resolved: value }),
    (error: unknown) => ({ error }),
  );
  if (!('error' in outcome) || !(outcome.error instanceof OpenAI.APIError)) {
    throw new Error(`expected an APIError, got ${JSON.stringify(outcome).slice(0, 500)}`);
  }
  return outcome.error;
}
