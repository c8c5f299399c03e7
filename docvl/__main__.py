from docvl.cli import main

main()
