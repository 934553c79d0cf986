from pinspect.cli import main

main()
