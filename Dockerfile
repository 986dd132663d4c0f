# syntax=docker/dockerfile:1
# EdgeServer: multi-arch (linux/amd64, linux/arm64, linux/arm/v7) image.
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 -t edgeserver .
# linux/arm/v7 (32-bit Raspberry Pi OS) builds llama.cpp from source with a cross compiler: some minutes more.
#   docker run -p 8080:8080 -v "$PWD/models:/models:ro" -e EdgeServer__Security__ApiKeys__0=your-key edgeserver

# Build on the build machine's own architecture; publish for the target's.
FROM --platform=$BUILDPLATFORM mcr.microsoft.com/dotnet/sdk:10.0 AS build
ARG TARGETARCH
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && if [ "$TARGETARCH" = arm ]; then \
      apt-get install -y --no-install-recommends cmake git make g++-arm-linux-gnueabihf; \
    fi \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The llama.cpp native libraries (pinned by the lockfile) in their own layer.
COPY native/package.json native/package-lock.json native/
RUN cd native && npm ci --force --ignore-scripts --no-audit --no-fund
COPY . .
RUN case "$TARGETARCH" in \
      arm64) rid=linux-arm64 ;; \
      arm) rid=linux-arm ;; \
      amd64|"") rid=linux-x64 ;; \
      *) echo "unsupported architecture: $TARGETARCH" >&2; exit 1 ;; \
    esac \
 && dotnet publish src/EdgeServer -c Release -r "$rid" --self-contained false -o /app

FROM mcr.microsoft.com/dotnet/aspnet:10.0
WORKDIR /app
COPY --from=build /app .
# In a container the server must listen on all interfaces; it warns at start-up when no API key is set.
ENV ASPNETCORE_URLS=http://0.0.0.0:8080 \
    EdgeServer__ModelsDirectory=/models \
    DOTNET_gcServer=0
VOLUME /models
EXPOSE 8080
# The aspnet image's unprivileged user.
USER $APP_UID
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["dotnet", "EdgeServer.dll", "--healthcheck"]
ENTRYPOINT ["dotnet", "EdgeServer.dll"]
