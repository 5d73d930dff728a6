/** @type {import('next').NextConfig} */
const nextConfig = {
  // As the gateway: no gzip, no X-Powered-By, so both send the same bytes.
  compress: false,
  poweredByHeader: false,
};

export default nextConfig;
