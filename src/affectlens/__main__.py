from affectlens.interrupt import run_cli

run_cli()
