/** Placeholder until the built-in page lands; the API lives under /api. */
export default function Home() {
  return (
    <main style={{ fontFamily: "system-ui, sans-serif", maxWidth: "40rem", margin: "3rem auto", padding: "0 1rem" }}>
      <h1>Text-to-Image Gateway</h1>
      <p>
        The gateway is running. See <code>GET /api</code> and <code>GET /api/health</code>; generate with{" "}
        <code>POST /api/generate</code>.
      </p>
    </main>
  );
}
