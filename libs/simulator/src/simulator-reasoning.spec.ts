import OpenAI from 'openai';
import { THINK_CLOSE, THINK_OPEN } from './completion.run';
import { REASONING_MODEL_NAME, SimulatorServer } from './simulator.server';

/** The raw deltas, as JSON objects, so that fields the SDK's types do not know (`reasoning_content`) are seen. */
type Delta = Record<string, unknown>;

describe('SimulatorServer: reasoning models', () => {
  let simulator: SimulatorServer;
  let openai: OpenAI;

  beforeAll(async () => {
    simulator = new SimulatorServer({ profile: 'instant' });
    openai = new OpenAI({ baseURL: await simulator.listen(), apiKey: 'x', maxRetries: 0 });
  });
  afterAll(() => simulator.close());

  async function stream(content: string, model = 'simulator', maxTokens?: number) {
    const chunks = await openai.chat.completions.create({
      model,
      messages: [{ role: 'user', content }],
      stream: true,
      stream_options: { include_usage: true },
      ...(maxTokens === undefined ? {} : { max_completion_tokens: maxTokens }),
    });
    const deltas: Delta[] = [];
    let usage: OpenAI.CompletionUsage | undefined;
    let finishReason: string | null = null;
    for await (const chunk of chunks) {
      if (chunk.choices[0]) deltas.push(chunk.choices[0].delta as Delta);
      finishReason = chunk.choices[0]?.finish_reason ?? finishReason;
      usage = chunk.usage ?? usage;
    }
    return { deltas, usage, finishReason };
  }

  const text = (deltas: Delta[], field: string) =>
    deltas.map((delta) => (typeof delta[field] === 'string' ? delta[field] : '')).join('');

  it(`${REASONING_MODEL_NAME} is listed, and thinks in reasoning_content before it answers`, async () => {
    const models = await openai.models.list();
    expect(models.data.map((model) => model.id)).toContain(REASONING_MODEL_NAME);

    const { deltas, usage } = await stream('Why is the sky blue?', REASONING_MODEL_NAME);
    const reasoningAt = deltas.flatMap((delta, index) => ('reasoning_content' in delta ? [index] : []));
    const contentAt = deltas.flatMap((delta, index) =>
      typeof delta.content === 'string' && delta.content !== '' ? [index] : [],
    );
    expect(reasoningAt.length).toBeGreaterThan(10);
    expect(contentAt.length).toBeGreaterThan(10);
    // Every reasoning delta comes before the first answer delta, and carries `content: null` as DeepSeek's do.
    expect(Math.max(...reasoningAt)).toBeLessThan(Math.min(...contentAt));
    for (const index of reasoningAt) expect(deltas[index].content).toBeNull();
    expect(usage?.completion_tokens_details?.reasoning_tokens).toBeGreaterThanOrEqual(reasoningAt.length);
    expect(usage?.completion_tokens).toBeGreaterThanOrEqual(reasoningAt.length + contentAt.length);
  });

  it('[sim reasoning=reasoning think=N] streams exactly N `reasoning` deltas on any model', async () => {
    const { deltas, usage } = await stream('[sim reasoning=reasoning think=6 tokens=4]');
    expect(deltas.filter((delta) => 'reasoning' in delta)).toHaveLength(6);
    expect(deltas.some((delta) => 'reasoning_content' in delta)).toBe(false);
    expect(deltas.filter((delta) => typeof delta.content === 'string' && delta.content !== '')).toHaveLength(
      4,
    );
    expect(usage?.completion_tokens_details?.reasoning_tokens).toBeGreaterThanOrEqual(6);
  });

  it('[sim reasoning=think] inlines the thinking in the content between <think> tags', async () => {
    const { deltas } = await stream('[sim reasoning=think think=5 tokens=3]');
    const content = text(deltas, 'content');
    expect(content.startsWith(THINK_OPEN)).toBe(true);
    const close = content.indexOf(THINK_CLOSE);
    expect(close).toBeGreaterThan(THINK_OPEN.length);
    expect(content.slice(close + THINK_CLOSE.length).length).toBeGreaterThan(0);
    expect(deltas.some((delta) => 'reasoning' in delta || 'reasoning_content' in delta)).toBe(false);
  });

  it('answers a non-streamed request with the same reasoning in the message', async () => {
    const prompt = '[sim think=7 tokens=5] consistent';
    const streamed = await stream(prompt);
    const completion = await openai.chat.completions.create({
      model: 'simulator',
      messages: [{ role: 'user', content: prompt }],
    });
    const message = completion.choices[0].message as OpenAI.ChatCompletionMessage & {
      reasoning_content?: string;
    };
    expect(message.reasoning_content).toBe(text(streamed.deltas, 'reasoning_content'));
    expect(message.content).toBe(text(streamed.deltas, 'content'));
    expect(completion.usage?.completion_tokens_details?.reasoning_tokens).toBe(
      streamed.usage?.completion_tokens_details?.reasoning_tokens,
    );
  });

  it('max_completion_tokens counts the thinking: the answer gets what the thinking left', async () => {
    const whole = await stream('[sim think=6 tokens=20] budget');
    const thinking = whole.usage?.completion_tokens_details?.reasoning_tokens ?? 0;
    const cap = thinking + 3;
    const capped = await stream('[sim think=6 tokens=20] budget', 'simulator', cap);
    expect(text(capped.deltas, 'reasoning_content')).toBe(text(whole.deltas, 'reasoning_content'));
    expect(text(whole.deltas, 'content').startsWith(text(capped.deltas, 'content'))).toBe(true);
    expect(capped.usage?.completion_tokens).toBeLessThanOrEqual(cap);
    expect(capped.usage?.completion_tokens).toBeGreaterThan(thinking);
    expect(capped.finishReason).toBe('length');
  });

  it('a max_completion_tokens the thinking uses up leaves no answer and ends with length', async () => {
    const capped = await stream('[sim think=30 tokens=20] budget', 'simulator', 4);
    expect(text(capped.deltas, 'reasoning_content')).not.toBe('');
    expect(text(capped.deltas, 'content')).toBe('');
    expect(capped.usage?.completion_tokens).toBeLessThanOrEqual(4);
    expect(capped.usage?.completion_tokens_details?.reasoning_tokens).toBe(capped.usage?.completion_tokens);
    expect(capped.finishReason).toBe('length');
  });

  it('[sim reasoning=none] turns the reasoning model into a plain one; an unknown style is a 400', async () => {
    const { deltas, usage } = await stream('[sim reasoning=none tokens=3]', REASONING_MODEL_NAME);
    expect(deltas.some((delta) => 'reasoning_content' in delta)).toBe(false);
    expect(usage?.completion_tokens_details?.reasoning_tokens).toBe(0);
    await expect(stream('[sim reasoning=loud]')).rejects.toBeInstanceOf(OpenAI.BadRequestError);
  });
});
