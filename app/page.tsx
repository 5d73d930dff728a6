import { Generator } from "./ui/generator";
import { HealthBadge } from "./ui/health-badge";

/** The built-in page: prompt entry, live progress, results and the GPU server's health. */
export default function Home() {
  return (
    <>
      <header className="app-header">
        <h1>Text-to-Image</h1>
        <HealthBadge />
      </header>
      <main className="app-main">
        <Generator />
      </main>
    </>
  );
}
