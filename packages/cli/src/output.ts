/**
 * Everything the CLI shows: plain, stable lines on pipes and files (tests and scripts read them),
 * colours and a spinner only on a terminal with NO_COLOR unset, a progress bar only on a terminal.
 */
import { styleText } from "node:util";

type Style = Parameters<typeof styleText>[0];

/** Whether `stream` gets colours and animations: a terminal, and NO_COLOR not set. */
export function fancy(stream: NodeJS.WriteStream): boolean {
  return stream.isTTY === true && process.env.NO_COLOR === undefined;
}

export function paint(stream: NodeJS.WriteStream, style: Style, text: string): string {
  return fancy(stream) ? styleText(style, text) : text;
}

export function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

export function err(line: string): void {
  process.stderr.write(`${line}\n`);
}

const SPINNER_FRAMES = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/** A spinner on stderr while `work` runs (only when stderr is fancy); cleared before anything is printed. */
export async function withSpinner<T>(label: string, work: () => Promise<T>): Promise<T> {
  const stream = process.stderr;
  if (!fancy(stream)) return work();
  let frame = 0;
  const draw = () => stream.write(`\r${styleText("cyan", SPINNER_FRAMES[frame++ % SPINNER_FRAMES.length]!)} ${label}\x1b[K`);
  draw();
  const timer = setInterval(draw, 80);
  try {
    return await work();
  } finally {
    clearInterval(timer);
    stream.write("\r\x1b[K");
  }
}

/** At most this often, a progress bar redraws. */
const PROGRESS_INTERVAL_MS = 100;
const BAR_WIDTH = 30;

export interface ProgressBar {
  /** Draws the final frame and leaves the line. */
  finish(): void;
}

/**
 * A progress bar on stderr when it is a terminal (colour or not: it is not a colour), redrawn at most
 * every 100 ms from `read()`; a no-op otherwise. The first frame is drawn at once.
 */
export function progressBar(read: () => { fraction: number; label: string }): ProgressBar {
  const stream = process.stderr;
  if (stream.isTTY !== true) return { finish() {} };
  const draw = () => {
    const { fraction, label } = read();
    const filled = Math.round(Math.min(1, Math.max(0, fraction)) * BAR_WIDTH);
    const bar = `[${"#".repeat(filled)}${".".repeat(BAR_WIDTH - filled)}]`;
    stream.write(`\r${paint(stream, "green", bar)} ${String(Math.floor(fraction * 100)).padStart(3)}% ${label}\x1b[K`);
  };
  draw();
  const timer = setInterval(draw, PROGRESS_INTERVAL_MS);
  timer.unref();
  return {
    finish() {
      clearInterval(timer);
      draw();
      stream.write("\n");
    },
  };
}
